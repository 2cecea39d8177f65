"""Writes that must report what really happened: lost replies, races, contention (e2e)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import BIN, Emulator

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e


def _port(emulator: Emulator) -> int:
    return int(emulator.url.rsplit(":", 1)[1])


def _through(emulator: Emulator, proxy: FaultProxy) -> Emulator:
    return Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})


def _row_of(body: bytes) -> str:
    request = json.loads(body)
    key = request.get("Item") or request.get("Key") or {}
    return f"{key['Service']['S']}/{key['Username']['S']}"


class LoseFirstReplyPerRow:
    """A proxy policy: the first write of each row goes through and its reply is lost."""

    def __init__(self) -> None:
        self.lost: set[str] = set()

    def __call__(self, operation: str, count: int, body: bytes) -> str:
        if operation not in ("PutItem", "DeleteItem"):
            return "forward"
        row = _row_of(body)
        if row in self.lost:
            return "forward"
        self.lost.add(row)
        return "lose-reply"


def _versions(chain: CloudChain, service: str, user: str) -> list[int]:
    return [v.version for v in chain.history(service, user)]


def test_a_lost_reply_does_not_change_what_a_write_reports(emulator: Emulator) -> None:
    direct = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    for user in ("plain", "checked", "rolled", "deleted", "undeleted", "purged"):
        direct.save("app", user, "v1")
    direct.save("app", "rolled", "v2")
    direct.delete("app", "undeleted")
    direct.delete("app", "purged")
    policy = LoseFirstReplyPerRow()
    with FaultProxy(_port(emulator), policy) as proxy:
        lossy = _through(emulator, proxy)
        runs = {
            "plain": ("-u", "plain", "-e", "app", "--save", "-"),
            "checked": ("-u", "checked", "-e", "app", "--save", "-", "--expect-version", "1"),
            "rolled": ("-u", "rolled", "-e", "app", "--rollback", "1"),
            "deleted": ("-u", "deleted", "-e", "app", "--delete"),
            "undeleted": ("-u", "undeleted", "-e", "app", "--undelete"),
            "purged": ("-u", "purged", "-e", "app", "--purge"),
            "import": ("-e", "imported", "--import", "-"),
        }
        stdin = {"import": json.dumps({"a": "1", "b": "2", "c": "3"})}
        with ThreadPoolExecutor(len(runs)) as pool:
            futures = {
                name: pool.submit(lossy.run, *argv, stdin=stdin.get(name, "v2"))
                for name, argv in runs.items()
            }
            results = {name: future.result() for name, future in futures.items()}
    # Every write's first reply was really lost, and botocore really sent it again.
    assert policy.lost == {"app/plain", "app/checked", "app/rolled", "app/deleted", "app/undeleted",
                           "app/purged", "imported/a", "imported/b", "imported/c"}  # fmt: skip
    assert proxy.counts["PutItem"] >= 2 * 8 and proxy.counts["DeleteItem"] >= 2
    for name, result in results.items():
        assert result.code == 0, (name, result.err)
    assert "saved app/plain version 2" in results["plain"].err
    assert _versions(direct, "app", "plain") == [2, 1]  # written once, not twice
    assert "saved app/checked version 2" in results["checked"].err
    assert _versions(direct, "app", "checked") == [2, 1]
    assert results["rolled"].out == "3\n"
    assert _versions(direct, "app", "rolled") == [3, 2, 1]
    assert direct.read("app", "rolled") == "v1"
    assert [e.user for e in direct.list("app")] == ["checked", "plain", "rolled", "undeleted"]
    assert [e.user for e in direct.list("app", deleted=True)] == ["deleted"]
    assert (results["undeleted"].out, _versions(direct, "app", "undeleted")) == ("3\n", [3, 2, 1])
    assert "purged app/purged" in results["purged"].err
    assert "3 created" in results["import"].err
    assert {u: _versions(direct, "imported", u) for u in "abc"} == {u: [1] for u in "abc"}


def test_a_save_held_across_a_reencrypt_does_not_undo_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    direct = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    direct.save("app", "u", "v1")
    CloudChain(endpoint_url=emulator.url, keyalias="alias/new").setup(create_key=True)
    kms = emulator.client("kms")
    new_arn = kms.describe_key(KeyId="alias/new")["KeyMetadata"]["Arn"]

    def hold_the_first_put(operation: str, count: int, body: bytes) -> str:
        return "hold" if operation == "PutItem" and count == 1 else "forward"

    secret = tmp_path / "secret"
    secret.write_text("v2")
    with FaultProxy(_port(emulator), hold_the_first_put) as proxy, secret.open("rb") as stdin:
        saver = subprocess.Popen(
            [str(BIN / "cchain"), "-u", "u", "-e", "app", "--save", "-"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url},
        )
        assert proxy.held.wait(30), "the save never sent its PutItem"
        # The save has read version 1 and encrypted version 2: now a rotation gets in first.
        rotated = emulator.run("--reencrypt", "--key-alias", "alias/new")
        assert rotated.code == 0, rotated.err
        proxy.release()
        _, err = saver.communicate(timeout=60)
    assert saver.returncode == 0, err
    assert b"version 2" in err
    item = emulator.client("dynamodb").get_item(
        TableName="safedb", Key={"Service": {"S": "app"}, "Username": {"S": "u"}}
    )["Item"]
    old = item["History"]["L"][0]["M"]
    blob = __import__("base64").b64decode(old["Secret"]["S"])
    context = {"Service": "app", "Username": "u", "Version": "1"}
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["KeyId"] == new_arn
    assert direct.read("app", "u", version=1) == "v1"


# One process running `cchain --save` 20 times through the CLI's entry point, reading each
# secret from stdin as a shell pipe would feed it; printing each exit status.
SAVE_TWENTY_TIMES = """
import io, sys
from cloudchain.cli import main
for n in range(1, 21):
    sys.stdin = io.TextIOWrapper(io.BytesIO(f"{sys.argv[1]}-{n}".encode()))
    print("exit", main(["-u", "u", "-e", "hot", "--save", "-"]), flush=True)
"""


def test_eight_processes_saving_one_secret_all_succeed(
    local_emulator: Emulator, tmp_path: Path
) -> None:
    # 10 ms more per request, as on a real network, widens the window between a save's read
    # and its conditional write: the races are real, many and long.
    with FaultProxy(_port(local_emulator), lambda *_: "delay:0.01") as proxy:
        processes = [
            subprocess.Popen(
                [str(BIN / "python"), "-c", SAVE_TWENTY_TIMES, f"p{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**local_emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url},
                text=True,
                cwd=tmp_path,  # `python -c` puts its working directory first on sys.path
            )
            for n in range(8)
        ]
        outputs = [process.communicate(timeout=240) for process in processes]
    assert proxy.counts["PutItem"] > 200  # many saves lost a race and tried again
    statuses = [line for out, _ in outputs for line in out.splitlines()]
    errors = "".join(err for _, err in outputs)
    assert statuses == ["exit 0"] * 160, errors
    saved = sorted(int(line.rsplit("version ", 1)[1].split()[0])
                   for line in errors.splitlines() if "saved hot/u version" in line)  # fmt: skip
    assert saved == list(range(1, 161))  # 160 saves, each its own version, no gaps
    history = CloudChain(endpoint_url=local_emulator.url).history("hot", "u")
    assert [v.version for v in history] == list(range(160, 150, -1))


def test_a_half_sent_request_does_not_stall_the_local_emulator(tmp_path: Path) -> None:
    out = tmp_path / "local.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDCHAIN_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", HOME=str(tmp_path))
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [str(BIN / "cchain-local"), "--port", "0", "--request-timeout", "2"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    try:
        from support import exported_settings, wait_for_text

        settings = exported_settings(wait_for_text(out, "export AWS_ACCESS_KEY_ID", proc))
        local = Emulator(settings["CLOUDCHAIN_ENDPOINT_URL"], {**env, **settings})
        host, port = local.url.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b'X-Amz-Target: DynamoDB_20120810.GetItem\r\n\r\n{"TableName": '
        )  # ... and the rest of the body never comes
        started = time.monotonic()
        saved = local.run("-u", "u", "-e", "s", "--save", "-", stdin="x")
        assert saved.code == 0, saved.err
        assert local.run("-u", "u", "-e", "s", "--read").out == "x\n"
        assert time.monotonic() - started < 10
        stalled.settimeout(10)
        assert _closed_by_peer(stalled), "the slow client was never dropped"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _closed_by_peer(sock: Any) -> bool:
    """Whether the server closes the connection (after an error reply, if any) in time."""
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True
