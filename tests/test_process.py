"""run_bounded: deadlines kill the whole process group; input never reaches argv."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudchain.process import run_bounded


def test_status_and_input(tmp_path: Path) -> None:
    out = tmp_path / "got"
    done = run_bounded(["sh", "-c", f"cat > {out}; exit 3"], timeout=10, stdin=b"value")
    assert (done.status, done.ok, done.describe()) == (3, False, "exited with status 3")
    assert out.read_bytes() == b"value"


def test_timeout_kills_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    done = run_bounded(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], timeout=0.5)
    assert done.timed_out and time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    assert _gone(grandchild)


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie left to a parent (init) that has not reaped it."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_signal_is_reported() -> None:
    done = run_bounded(["sh", "-c", "kill -TERM $$"], timeout=10)
    assert done.killed_by == signal.SIGTERM and "SIGTERM" in done.describe()


def test_unread_large_input_and_flooded_output_do_not_hang() -> None:
    done = run_bounded(
        [sys.executable, "-c", "import sys; sys.stdout.write('x' * 5_000_000)"],
        timeout=20,
        stdin=b"y" * 1_000_000,
    )
    assert done.ok


def test_missing_command_is_an_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        run_bounded(["/nonexistent/hook"], timeout=1)


def test_cancel_kills_the_group_at_once_and_input_still_arrives(tmp_path: Path) -> None:
    pid_file, got = tmp_path / "pid", tmp_path / "got"
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    done = run_bounded(["sh", "-c", f"cat > {got}; sleep 30 & echo $! > {pid_file}; wait"],
                       timeout=30, stdin=b"value", cancel=cancel)  # fmt: skip
    assert done.timed_out and time.monotonic() - started < 5
    assert got.read_bytes() == b"value"
    assert _gone(int(pid_file.read_text()))
    finished = run_bounded(["sh", "-c", "exit 4"], timeout=5, cancel=threading.Event())
    assert finished.status == 4
