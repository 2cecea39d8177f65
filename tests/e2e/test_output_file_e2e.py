"""-o FILE on a shared host, through the installed cchain: another local user (a throwaway one,
made for each test) plants FIFOs, devices, symbolic and hard links where cchain will write, and
must get nothing. Nothing here relies on fs.protected_fifos/symlinks/hardlinks (0 here)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BIN, Emulator, Result
from users import add_user, remove_user, skip_unless_python_runs_as

pytestmark = pytest.mark.e2e

SECRET = "s3cret-value"
TEMPLATE = '{{ secret("app", "db") }}\n'
EXPECTED = f"{SECRET}\n"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def command(self, *argv: str) -> list[str]:
        """argv run as this user, with none of the caller's groups."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *argv]

    def run(self, *argv: str) -> None:
        subprocess.run(self.command(*argv), check=True, timeout=30)


def _make_user() -> User:
    name = f"cct{uuid.uuid4().hex[:10]}"
    entry = add_user(name, "-m", "-s", "/bin/sh")
    return User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


@dataclass
class Host:
    """A shared host: a sticky world-writable directory (as /tmp), the user who runs cchain
    (the victim) and another user (the attacker)."""

    emulator: Emulator
    shared: Path
    victim: User
    attacker: User

    def cchain(self, *args: str, as_root: bool = False, piped: bool = False) -> Result:
        """The installed cchain, as the victim (or as root), with the template in shared/;
        piped: its stdout a pipe the victim owns, as its shell's `cchain ... | cat` makes."""
        home = self.victim.home
        env = {**self.emulator.env, "HOME": str(home), "AWS_CONFIG_FILE": str(home / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(home / "none")}  # fmt: skip
        argv = [str(BIN / "cchain"), *args]
        command = argv if as_root else self.victim.command(*argv)
        if not piped:
            proc = subprocess.run(command, capture_output=True, env=env, timeout=60,
                                  cwd=self.shared)  # fmt: skip
            return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), proc.stdout)
        read_end, write_end = os.pipe()
        os.fchown(write_end, self.victim.uid, self.victim.gid)
        with os.fdopen(read_end, "rb") as reader:
            process = subprocess.Popen(command, stdout=write_end, stderr=subprocess.PIPE,
                                       env=env, cwd=self.shared)  # fmt: skip
            os.close(write_end)
            out = reader.read()
            _, err = process.communicate(timeout=60)
        return Result(process.returncode, out.decode(), err.decode(), out)

    def write(
        self, how: str, target: Path, *, as_root: bool = False, piped: bool = False
    ) -> Result:
        if how == "render":
            args = ["--render", str(self.shared / "t.j2")]
        else:
            args = ["-e", "app", "--export", "--format", "dotenv"]
        return self.cchain(*args, "-o", str(target), as_root=as_root, piped=piped)


@pytest.fixture
def host(emulator: Emulator) -> Iterator[Host]:
    assert emulator.run("-e", "app", "-u", "db", "--save", "-", stdin=SECRET).code == 0
    users: list[User] = []
    shared = Path(tempfile.mkdtemp(dir="/tmp", prefix="cchain-shared-"))
    try:
        users += [_make_user(), _make_user()]
        skip_unless_python_runs_as(users[0].uid, users[0].gid)
        shared.chmod(0o1777)
        (shared / "t.j2").write_text(TEMPLATE)
        (shared / "t.j2").chmod(0o644)
        yield Host(emulator, shared, *users)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for user in users:
            remove_user(user.name, "-r")


def _refused(result: Result, *words: str) -> None:
    assert result.code == 1, (result.out, result.err)
    assert result.err.startswith("cchain: error: cannot write ") and result.err.count("\n") == 1
    assert all(word in result.err for word in words), result.err
    assert SECRET not in result.out + result.err and "Traceback" not in result.err


WRITES = ["render", "export"]


@pytest.mark.parametrize("as_root", [False, True], ids=["user", "root"])
@pytest.mark.parametrize("how", WRITES)
def test_another_users_fifo_is_refused_and_its_reader_gets_nothing(
    host: Host, how: str, as_root: bool
) -> None:
    fifo = host.shared / "app.conf"
    host.attacker.run("mkfifo", "-m", "666", str(fifo))
    reader = subprocess.Popen(host.attacker.command("cat", str(fifo)), stdout=subprocess.PIPE)
    try:
        _refused(host.write(how, fifo, as_root=as_root), "FIFO owned by another user")
    finally:
        # Let the reader's open return, if it is still waiting, then see what it got: nothing.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        stolen, _ = reader.communicate(timeout=30)
    assert stolen == b""


@pytest.mark.parametrize("how", WRITES)
def test_another_users_device_is_refused(host: Host, how: str) -> None:
    device = host.shared / "app.dev"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    os.chown(device, host.attacker.uid, host.attacker.gid)
    _refused(host.write(how, device), "device or socket owned by another user")


@pytest.mark.parametrize("as_root", [False, True], ids=["user", "root"])
@pytest.mark.parametrize("how", WRITES)
def test_another_users_symlink_to_the_victims_file_is_refused(
    host: Host, how: str, as_root: bool
) -> None:
    notes = host.victim.home / "notes.txt"
    host.victim.run("sh", "-c", f"echo my notes > {notes}")
    link = host.shared / "app2.conf"
    host.attacker.run("ln", "-s", str(notes), str(link))
    _refused(host.write(how, link, as_root=as_root), "symbolic link owned by another user")
    assert notes.read_text() == "my notes\n"
    assert link.is_symlink()


@pytest.mark.parametrize("how", WRITES)
def test_another_users_symlink_in_the_directory_part_is_refused(host: Host, how: str) -> None:
    host.attacker.run("ln", "-s", str(host.victim.home), str(host.shared / "conf.d"))
    _refused(host.write(how, host.shared / "conf.d" / "app.conf"), "symbolic link", "conf.d")
    assert not (host.victim.home / "app.conf").exists()


@pytest.mark.parametrize("how", WRITES)
def test_a_world_writable_directory_that_is_not_sticky_is_refused(host: Host, how: str) -> None:
    open_dir = host.shared / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    _refused(host.write(how, open_dir / "app.conf"), "every user may write", "not sticky")
    assert list(open_dir.iterdir()) == []


def test_a_hard_link_to_the_victims_file_is_replaced_not_written_into(host: Host) -> None:
    private = host.shared / "victim"
    host.victim.run("mkdir", "-m", "755", str(private))
    notes = private / "notes.txt"
    host.victim.run("sh", "-c", f"echo my notes > {notes} && chmod 644 {notes}")
    planted = host.shared / "app3.conf"
    # As another user could with fs.protected_hardlinks=0 (it is 1 here): root plants the link.
    os.link(notes, planted)
    assert host.write("render", planted).code == 0
    assert notes.read_text() == "my notes\n"
    written = planted.stat()
    assert (written.st_uid, stat.S_IMODE(written.st_mode), written.st_nlink) == (
        host.victim.uid, 0o600, 1)  # fmt: skip
    assert planted.read_text() == EXPECTED


@pytest.mark.parametrize("how", WRITES)
def test_the_callers_own_fifo_symlink_and_stdout_still_work(host: Host, how: str) -> None:
    fifo = host.shared / "mine.fifo"
    host.victim.run("mkfifo", "-m", "600", str(fifo))
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = host.write(how, fifo)
    reader.join(30)
    assert result.code == 0, result.err
    assert SECRET.encode() in received[0]

    notes = host.victim.home / "app.env"
    host.victim.run("sh", "-c", f"echo old > {notes}")
    link = host.shared / "mine.link"
    host.victim.run("ln", "-s", str(notes), str(link))
    assert host.write(how, link).code == 0
    assert link.is_symlink() and SECRET in notes.read_text()

    result = host.write(how, Path("/dev/stdout"), piped=True)
    assert result.code == 0, result.err
    assert SECRET in result.out
