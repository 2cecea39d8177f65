"""A throwaway second local user for tests that need someone else on the same host.

Tests run as root (here and in CI); the user is made with useradd and removed with userdel,
and never relies on fs.protected_* sysctls.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def other_user() -> Iterator[tuple[int, int, Path]]:
    """A new user's uid, gid and a home of its own (mode 0755 under a 0755 folder in /tmp)."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to make a second user")
    name = f"cc{os.getpid()}{os.urandom(3).hex()}"
    base = Path(tempfile.mkdtemp(prefix="cchain-users-", dir="/tmp"))
    base.chmod(0o755)
    home = base / name
    entry = add_user(name, "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                     "--user-group")  # fmt: skip
    try:
        home.mkdir(mode=0o755)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        skip_unless_python_runs_as(entry.pw_uid, entry.pw_gid)
        yield entry.pw_uid, entry.pw_gid, home
    finally:
        remove_user(name)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def add_user(name: str, *options: str) -> pwd.struct_passwd:
    """useradd OPTIONS NAME, again while /etc/passwd is locked by a parallel test."""
    for attempt in range(20):
        made = subprocess.run(["useradd", *options, name], capture_output=True)
        if made.returncode == 0:
            return pwd.getpwnam(name)
        time.sleep(0.2 + attempt * 0.1)
    raise RuntimeError(f"useradd failed: {made.stderr.decode()}")


def remove_user(name: str, *options: str) -> None:
    """End the user's processes, then userdel OPTIONS NAME, again while /etc/passwd is locked."""
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    for attempt in range(20):
        done = subprocess.run(["userdel", *options, name], capture_output=True).returncode
        if done in (0, 6):  # 6: no such user
            return
        time.sleep(0.2 + attempt * 0.1)


def as_user(uid: int, gid: int, *argv: str) -> list[str]:
    """argv run as uid/gid with no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def skip_unless_python_runs_as(uid: int, gid: int) -> None:
    """Skip the test when another user cannot run this interpreter: a Python built under a
    directory only root may enter (pyenv in /root) loads its libpython from there."""
    probe = subprocess.run(as_user(uid, gid, sys.executable, "-c", "pass"), capture_output=True)
    if probe.returncode != 0:
        import pytest

        pytest.skip(f"uid {uid} cannot run {sys.executable}: {probe.stderr.decode()[:120]}")
