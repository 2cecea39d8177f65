"""Staged writes and --rotate with every write's first reply lost: each reports its true
outcome, no version is written twice, and no rotation lease is left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import Emulator

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e

ROW = ("-u", "app", "-e", "lossy")


class LoseEveryFirstReply:
    """A proxy policy: each distinct PutItem goes through and its first reply is lost."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, operation: str, count: int, body: bytes) -> str:
        if operation != "PutItem":
            return "forward"
        digest = hashlib.sha256(body).hexdigest()
        if digest in self.seen:
            return "forward"  # botocore's retry
        self.seen.add(digest)
        return "lose-reply"


def test_staged_writes_and_rotations_survive_lost_replies(
    emulator: Emulator, tmp_path: Path
) -> None:
    direct = CloudChain(endpoint_url=emulator.env["CLOUDCHAIN_ENDPOINT_URL"], keyalias=KEY_ALIAS)
    direct.save("lossy", "app", "pw-1")
    direct.save("lossy", "app", "pw-2", stage="pending")
    hook = tmp_path / "hook"
    hook.write_text(
        '#!/bin/sh\ncat >/dev/null\n[ "$1" = test ] && [ -e "$0.fail" ] && exit 9\nexit 0\n'
    )
    hook.chmod(0o755)
    policy = LoseEveryFirstReply()
    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), policy) as proxy:
        lossy = Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})
        aborted = lossy.run(*ROW, "--abort")
        (tmp_path / "hook.fail").touch()
        failed = lossy.run(*ROW, "--rotate", "--hook", str(hook), stdin="pw-3")
        (tmp_path / "hook.fail").unlink()
        rotated = lossy.run(*ROW, "--rotate", "--hook", str(hook), stdin="unused")
    assert aborted.code == 0, aborted.err
    assert failed.code == 1 and "status 9" in failed.err, failed.err
    assert (rotated.code, rotated.out) == (0, "3\n"), rotated.err  # resumed pending version 3
    assert len(policy.seen) == 6  # abort; claim, stage, release; claim, promote
    history = [(v.version, v.action, v.stage) for v in direct.history("lossy", "app")]
    assert history == [(3, "promote", "current"), (1, "save", "previous"), (2, "abort", None)]
    assert direct.read("lossy", "app") == "pw-3"
    assert direct._claim_rotation("lossy", "app", "next", 60) == (3, None)  # no lease left
