"""Ctrl-C and SIGTERM stop bulk work at once, say what was done, and a re-run finishes (e2e)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import BIN, Emulator

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

ROWS = 400


def _interrupt(
    argv: list[str], env: dict[str, str], proxy: FaultProxy, operation: str, after: int,
    signum: int = signal.SIGINT, stdin: Path | None = None,
) -> tuple[int, float, str, str]:  # fmt: skip
    """Run cchain, send it signum once the proxy has seen `after` requests of operation;
    return its exit status, how long it took to exit after the signal, stdout and stderr."""
    with (stdin or Path("/dev/null")).open("rb") as source:
        proc = subprocess.Popen(
            [str(BIN / "cchain"), *argv],
            stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while proxy.counts[operation] < after:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"only {proxy.counts[operation]} {operation}"
            time.sleep(0.01)
        proc.send_signal(signum)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
    return proc.returncode, time.monotonic() - sent, out.decode(), err.decode()


def test_bulk_work_stops_within_two_seconds_of_a_signal_and_a_rerun_finishes(
    emulator: Emulator, tmp_path: Path
) -> None:
    entries = {f"k{n:04d}": f"value-{n}" for n in range(ROWS)}
    source = tmp_path / "in.json"
    source.write_text(json.dumps(entries))
    direct = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    # Every request takes 30 ms longer: a slow network, so the work is still going on when
    # the signal comes.
    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), lambda *_: "delay:0.03") as proxy:
        env = {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url}
        through = Emulator(proxy.url, env)

        # import, Ctrl-C
        code, took, _, err = _interrupt(
            ["-e", "big", "--import", "-"], env, proxy, "PutItem", 100, stdin=source
        )
        assert code == 130 and took < 2, (code, took, err)
        assert "import into big interrupted:" in err and "run the same import again" in err
        reported = int(err.split("interrupted: ", 1)[1].split()[0])
        written = len(list(direct.list("big")))
        assert 100 <= written < ROWS
        assert reported <= written <= reported + 16  # at most the calls in flight landed
        time.sleep(0.5)
        assert len(list(direct.list("big"))) == written  # nothing went on after the exit
        rerun = through.run("-e", "big", "--import", str(source))
        assert rerun.code == 0, rerun.err
        assert f"{ROWS - written} created, 0 changed, {written} unchanged" in rerun.err

        # export and exec's loading step, Ctrl-C: nothing printed, the command never runs
        proxy.counts.clear()
        code, took, out, err = _interrupt(["-e", "big", "--export"], env, proxy, "Decrypt", 50)
        assert (code, out, took < 2) == (130, "", True), err
        marker = tmp_path / "ran"
        proxy.counts.clear()
        code, took, _, err = _interrupt(
            ["-e", "big", "--exec", "--", "touch", str(marker)], env, proxy, "Decrypt", 50
        )
        assert (code, took < 2, marker.exists()) == (130, True, False), err

        # reencrypt, SIGTERM: exit 143, the count on stderr; a re-run only does what is left
        CloudChain(endpoint_url=emulator.url, keyalias="alias/new").setup(create_key=True)
        proxy.counts.clear()
        rotate = ["--reencrypt", "-e", "big", "--key-alias", "alias/new"]
        code, took, _, err = _interrupt(rotate, env, proxy, "PutItem", 50, signal.SIGTERM)
        assert (code, took < 2) == (143, True), err
        assert "re-encryption interrupted after" in err
        done = int(err.split("interrupted after ", 1)[1].split()[0])
        assert 50 - 16 <= done < ROWS  # the signal came after 50 writes were sent
        finished = through.run(*rotate)
        assert finished.code == 0, finished.err
        moved, current = (
            int(finished.err.split("re-encrypted ", 1)[1].split(",")[0]),
            int(finished.err.split("already current ", 1)[1].split(",")[0]),
        )
        assert moved + current == ROWS and done <= current <= done + 16
    assert direct.export("big") == entries
