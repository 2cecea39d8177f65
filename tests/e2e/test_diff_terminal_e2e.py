"""`--diff --show-values` on a real terminal: a pseudo-terminal that is the installed cchain's
controlling terminal (setsid --ctty), as in an interactive shell."""

from __future__ import annotations

import os
import select
import subprocess
import time

import pytest
from support import BIN, Emulator

pytestmark = pytest.mark.e2e

ROW = ["-u", "alice", "-e", "billing"]
PROMPT = b"in clear? [y/N] "


def _two_versions(emulator: Emulator) -> None:
    for value in ("pass=one\n", "pass=two\n"):
        assert emulator.run(*ROW, "--save", "-", stdin=value + "\n").code == 0


def _on_a_terminal(
    emulator: Emulator, answer: bytes | None, ctty: bool = True
) -> tuple[int, bytes]:
    """Run `cchain --diff --show-values` with a pty as stdin, stdout and stderr; type answer
    after the prompt; return the exit code and everything the terminal showed."""
    master, slave = os.openpty()
    command = [str(BIN / "cchain"), *ROW, "--diff", "--show-values"]
    process = subprocess.Popen(
        ["setsid", "--ctty", *command] if ctty else command,
        stdin=slave, stdout=slave, stderr=slave, env=emulator.env,
        start_new_session=not ctty,  # no controlling terminal at all
    )  # fmt: skip
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the last holder of the slave side has gone
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None and shown.endswith(PROMPT):
                    os.write(master, answer)
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), shown.replace(b"\r\n", b"\n")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_show_values_asks_the_terminal_and_prints_on_yes(emulator: Emulator) -> None:
    _two_versions(emulator)
    code, shown = _on_a_terminal(emulator, b"y\n")
    assert code == 0, shown
    assert b"Print both values of billing/alice in clear? [y/N] " in shown
    assert b"-pass=one\n+pass=two\n" in shown


@pytest.mark.parametrize("answer", [b"n\n", b"\n", b"yes please\n"])
def test_show_values_on_a_terminal_prints_nothing_without_a_yes(
    emulator: Emulator, answer: bytes
) -> None:
    _two_versions(emulator)
    code, shown = _on_a_terminal(emulator, answer)
    assert code == 1, shown
    assert PROMPT in shown
    assert b"not confirmed; no value was printed" in shown
    assert b"pass=" not in shown


def test_show_values_with_a_terminal_but_none_to_ask_refuses(emulator: Emulator) -> None:
    _two_versions(emulator)
    code, shown = _on_a_terminal(emulator, None, ctty=False)
    assert code == 1, shown
    assert PROMPT not in shown
    assert b"not confirmed; no value was printed" in shown
    assert b"pass=" not in shown
