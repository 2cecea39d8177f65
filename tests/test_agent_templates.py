"""cchain-agent's templates in-process (moto): settings and refusals, atomic writes, renders
through the cache, commands, debouncing and metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from cloudchain import CloudChain
from cloudchain.agent.cached import CachedSecrets
from cloudchain.agent.main import main
from cloudchain.agent.template_config import TemplateSpec, load_templates
from cloudchain.agent.template_files import NotAFile, Written, write_if_changed
from cloudchain.agent.templates import Template, Templates, _Loop
from cloudchain.config_file import read_config_file
from cloudchain.errors import ValidationError


def _spec(tmp_path: Path, text: str, **settings: object) -> TemplateSpec:
    source = tmp_path / "t.j2"
    source.write_text(text)
    fields = {"name": "t", "source": source, "destination": tmp_path / "out.txt", "text": text,
              "services": ("web",), **settings}  # fmt: skip
    return TemplateSpec(**fields)  # type: ignore[arg-type]


def test_sections_and_flags_give_templates_with_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.j2").write_text('{{ secret("web", "db") }}{{ services("api") }}')
    config = tmp_path / "conf" / "agent.rc"
    config.write_text(
        "[template app]\nsource = app.j2\ndestination = ../app.conf\nmode = 0640\n"
        "command = systemctl reload 'my app'\ncommand_timeout = 5s\nwait = 1s:3s\n"
        "error_on_missing = off\n"
    )
    flag = f"{tmp_path}/conf/app.j2:{tmp_path}/flag.conf"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "systemctl").write_text("#!/bin/sh\n")
    (tmp_path / "systemctl").chmod(0o755)
    flagged, app = load_templates([flag], str(config), {})
    assert (app.name, app.destination, app.mode, app.command) == (
        "app", tmp_path / "app.conf", 0o640, ("systemctl", "reload", "my app"))  # fmt: skip
    assert (app.command_timeout, app.wait, app.error_on_missing) == (5.0, (1.0, 3.0), False)
    assert app.services == ("web", "api")
    assert (flagged.name, flagged.mode, flagged.command, flagged.wait) == (
        f"{tmp_path}/flag.conf", 0o600, (), (2.0, 10.0))  # fmt: skip
    assert (flagged.command_timeout, flagged.error_on_missing) == (30.0, True)
    # cchain reads the same file: a template section is the agent's, not a stray one
    assert read_config_file(config, required=True).warnings == ()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("source = t.j2\ndestination = o\ncomand = true", "template x: unknown key 'comand'"),
        ("source = t.j2\ndestination = o\nmode = 0999", "template x: mode '0999' is not an octal"),
        ("source = t.j2\ndestination = o\nmode = 0666", "template x: mode '0666' lets group or"),
        ("source = t.j2\ndestination = o\nmode = 0620", "template x: mode '0620' lets group or"),
        ("source = t.j2\ndestination = o\nwait = 5s:1s", "template x: wait: the maximum '1s'"),
        ("source = t.j2\ndestination = o\ncommand_timeout = 0s", "template x: command_timeout: a"),
        ("source = t.j2\ndestination = o\nerror_on_missing = maybe", "template x: 'maybe' is not"),
        ("source = t.j2\ndestination = o\ncommand = no-such-cmd", "template x: command 'no-such-"),
        ("source = t.j2\ndestination = o\ncommand = 'open", "template x: No closing quotation"),
        ("source = none.j2\ndestination = o", "template x: cannot read source "),
        # A source decides which secrets are written where: one another user may change,
        # or reach through a link of theirs, would let them render any secret the agent reads.
        ("source = theirs.j2\ndestination = o", "template x: source {d}/theirs.j2 belongs to"),
        ("source = loose.j2\ndestination = o", "template x: source {d}/loose.j2 is writable by"),
        ("source = by-link.j2\ndestination = o", "{d}/by-link.j2 is reached through a symbolic"),
        ("source = fifo.j2\ndestination = o", "template x: source {d}/fifo.j2 is not a regular"),
        ("source = bad.j2\ndestination = o", "template x line 1: "),
        ("destination = o", "template x: source is missing"),
        ("source = t.j2\ndestination = no/o", "template x: directory {d}/no does not exist"),
        ("source = t.j2\ndestination = link/o", "template x: directory {d}/link is a symbolic"),
        ("source = t.j2\ndestination = t.j2/o", "template x: {d}/t.j2 is not a directory"),
        ("source = t.j2\ndestination = evil", "template x: destination {d}/evil is a symbolic"),
        ("source = t.j2\ndestination = sub", "template x: destination {d}/sub is not a file"),
        (
            "source = t.j2\ndestination = o\n[template y]\nsource = t.j2\ndestination = ./o",
            "templates 'x' and 'y' both write {d}/o",
        ),
        (
            "source = t.j2\ndestination = sub/o\n[template y]\nsource = t.j2\n"
            "destination = alias/sub/o",
            "templates 'x' and 'y' both write {d}/alias/sub/o",
        ),
    ],
)
def test_bad_templates_are_one_line_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, message: str
) -> None:
    (tmp_path / "t.j2").write_text("plain")
    (tmp_path / "bad.j2").write_text("{% if %}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    (tmp_path / "alias").symlink_to(tmp_path)  # another way to the same directories
    (tmp_path / "evil").symlink_to(tmp_path / "t.j2")
    for name, owner, mode in (("theirs.j2", 4321, 0o644), ("loose.j2", 0, 0o666)):
        (tmp_path / name).write_text("{{ secret('prod', 'root') }}")
        os.chown(tmp_path / name, owner, owner)
        (tmp_path / name).chmod(mode)
    (tmp_path / "by-link.j2").symlink_to(tmp_path / "t.j2")
    os.lchown(tmp_path / "by-link.j2", 4321, 4321)
    os.mkfifo(tmp_path / "fifo.j2")
    config = tmp_path / "agent.rc"
    config.write_text(f"[template x]\n{section}\n")
    assert main(["--once", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") <= 2
    assert err.startswith("cchain-agent: error: ") and message.format(d=tmp_path) in err, err
    assert (tmp_path / "t.j2").read_text() == "plain"  # the symbolic link's target, untouched


def test_a_config_file_with_templates_that_another_user_may_change_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its sections name the commands the agent runs (as root, often) and the sources it renders.
    (tmp_path / "t.j2").write_text("plain")
    config = tmp_path / "agent.rc"
    config.write_text("[template x]\nsource = t.j2\ndestination = o\ncommand = true\n")
    os.chown(config, 4321, 4321)
    assert main(["--once", "--config", str(config)]) == 2
    os.chown(config, 0, 0)
    config.chmod(0o666)
    assert main(["--once", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"cchain-agent: error: {config}, which holds [template] sections, belongs "
                      "to uid 4321, not to the agent's user or root")  # fmt: skip
    assert err[1].endswith("which holds [template] sections, is writable by group or others")
    assert not (tmp_path / "o").exists()


def test_a_template_flag_needs_both_paths_and_once_needs_a_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--once", "--template", "only-a-source"]) == 2
    assert main(["--once"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "cchain-agent: error: --template 'only-a-source' must be SOURCE:DESTINATION"
    assert err[1] == "cchain-agent: error: --once renders templates, and none is given"


def _empty(tmp_path: Path) -> Path:
    """A directory of its own (tmp_path holds the test's HOME)."""
    (tmp_path / "d").mkdir()
    return tmp_path / "d"


def test_writes_are_atomic_exact_mode_and_only_when_bytes_differ(tmp_path: Path) -> None:
    tmp_path = _empty(tmp_path)
    dest = tmp_path / "out"
    old = os.umask(0o077)
    try:
        assert write_if_changed(dest, b"one", 0o644) is Written.REPLACED
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"one" and dest.stat().st_mode & 0o777 == 0o644
    inode = dest.stat().st_ino
    assert write_if_changed(dest, b"one", 0o644) is Written.UNCHANGED
    assert write_if_changed(dest, b"one", 0o600) is Written.MODE
    assert dest.stat().st_ino == inode and dest.stat().st_mode & 0o777 == 0o600
    assert write_if_changed(dest, b"two", 0o600) is Written.REPLACED
    assert dest.read_bytes() == b"two" and dest.stat().st_ino != inode
    assert os.listdir(tmp_path) == ["out"]


def test_a_symbolic_link_or_a_fifo_at_the_destination_is_never_written(tmp_path: Path) -> None:
    tmp_path = _empty(tmp_path)
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    for name in ("link", "fifo"):
        with pytest.raises(NotAFile):
            write_if_changed(tmp_path / name, b"new", 0o600)
    assert target.read_text() == "keep" and (tmp_path / "link").is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link", "victim"]


def test_a_write_stopped_halfway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = _empty(tmp_path)
    dest = tmp_path / "out"
    dest.write_bytes(b"old")

    def stopped(fd: int) -> None:
        raise KeyboardInterrupt  # as SIGTERM's exit unwinds --once

    monkeypatch.setattr(os, "fsync", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_if_changed(dest, b"new" * 100_000, 0o600)
    assert dest.read_bytes() == b"old" and os.listdir(tmp_path) == ["out"]


@pytest.fixture
def cached(chain: CloudChain) -> CachedSecrets:
    chain.save("web", "db", "s3cret-one")
    made = CachedSecrets(chain, ttl=300, stale_if_error=0, max_entries=100, prefetch=["web"])
    made.start()
    yield made
    made.stop()


def test_render_write_and_command_once_per_change(
    cached: CachedSecrets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ran = tmp_path / "ran"
    spec = _spec(tmp_path, 'db={{ secret("web", "db") }}\n',
                 command=("sh", "-c", f'echo "$CLOUDCHAIN_TEMPLATE_DESTINATION $CLOUDCHAIN_TEMPLATE_NAME" >> {ran}'))  # fmt: skip
    template = Template(spec, _reader(cached, spec))
    caplog.set_level(logging.DEBUG, "cloudchain")
    assert template.render() and template.render()
    assert spec.destination.read_text() == "db=s3cret-one\n"
    assert ran.read_text() == f"{spec.destination} t\n"
    cached.chain.save("web", "db", "s3cret-two")
    cached.load("web")  # what the prefetch's refresh does
    assert template.render()
    assert spec.destination.read_text() == "db=s3cret-two\n"
    assert ran.read_text().count("\n") == 2
    counts = template.counts
    assert (counts.renders, counts.skipped, counts.commands, counts.render_errors) == (2, 1, 2, 0)
    assert "s3cret" not in caplog.text


def test_a_failed_render_keeps_the_last_file_and_logs_one_line_without_a_value(
    cached: CachedSecrets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec(tmp_path, '{{ secret("web", "db") }} {{ secret("web", "gone") }}')
    spec.destination.write_text("last good")
    template = Template(spec, _reader(cached, spec))
    assert not template.render()
    assert spec.destination.read_text() == "last good"
    assert template.counts.render_errors == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "template t: not rendered" in record.getMessage() and "gone" in record.getMessage()
    assert "s3cret" not in caplog.text and "\n" not in record.getMessage()
    assert not template.render()  # tried again, failing the same way: counted, not said again
    assert template.counts.render_errors == 2
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    cached.chain.save("web", "gone", "back")
    cached.load("web")
    assert template.render() and "template t: rendered again" in caplog.text
    undefined = _spec(tmp_path, '{{ secret("web", "db") ~ nope }}')
    assert not Template(undefined, _reader(cached, undefined)).render()
    assert "s3cret" not in caplog.text
    lenient = _spec(tmp_path, '[{{ secret("web", "never") }}]', error_on_missing=False)
    assert Template(lenient, _reader(cached, lenient)).render()
    assert lenient.destination.read_text() == "[]"


def test_a_failing_or_missing_command_is_counted_and_logged(
    cached: CachedSecrets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = _spec(tmp_path, "a", command=("sh", "-c", "exit 3"))
    template = Template(failing, _reader(cached, failing))
    assert not template.render()
    assert template.counts.command_failures == 1
    assert "template t: command exited with status 3" in caplog.text
    gone = _spec(tmp_path, "b", command=(str(tmp_path / "removed-since"),))
    template = Template(gone, _reader(cached, gone))
    assert not template.render()
    assert template.counts.command_failures == 1
    assert "template t: command cannot run: No such file" in caplog.text


def _reader(cached: CachedSecrets, spec: TemplateSpec):  # type: ignore[no-untyped-def]
    from cloudchain.agent.templates import Reader

    return Reader.cached(cached, spec.error_on_missing)


class _Counting:
    def __init__(self, spec: TemplateSpec) -> None:
        self.spec, self.times = spec, []

    def render(self) -> bool:
        self.times.append(time.monotonic())
        return True


def test_a_burst_of_changes_renders_once_after_its_wait_and_a_stream_by_its_maximum(
    tmp_path: Path,
) -> None:
    counting = _Counting(_spec(tmp_path, "x", wait=(0.15, 0.5)))
    stop = threading.Event()
    loop = _Loop(counting, period=60, stop=stop)  # type: ignore[arg-type]
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        for _ in range(100):
            if counting.times:
                break
            time.sleep(0.02)
        assert len(counting.times) == 1  # at start
        for _ in range(5):
            loop.changed()
            time.sleep(0.02)
        time.sleep(0.4)
        assert len(counting.times) == 2  # the burst: once, after 0.15 s of quiet
        assert counting.times[1] - counting.times[0] >= 0.15
        began = time.monotonic()
        while time.monotonic() - began < 1.2:  # never quiet: rendered at most each 0.5 s
            loop.changed()
            time.sleep(0.03)
        assert 3 <= len(counting.times) <= 8  # not one per change (40 of them)
    finally:
        stop.set()
        loop.wake()
        thread.join(5)
    assert not thread.is_alive()


def test_a_change_seen_by_the_refresh_wakes_only_the_templates_reading_it_and_metrics(
    cached: CachedSecrets, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    web = _spec(tmp_path, '{{ secret("web", "db") }}')
    other = _spec(tmp_path, "x", name="other", destination=tmp_path / "o", services=("api",))
    templates = Templates([web, other], cached)
    cached.chain.save("web", "db", "s3cret-two")
    cached.refresh_period()  # the agent's refresh: a change check, then the change feed
    assert [loop.first is not None for loop in templates._loops] == [True, False]
    templates.templates[0].render()
    registry = CollectorRegistry()
    registry.register(templates)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'cloudchain_agent_template_renders_total{template="t"} 1.0' in text
    assert 'cloudchain_agent_template_render_errors_total{template="other"} 0.0' in text


def test_a_destination_swapped_for_a_link_later_is_not_written_through(
    cached: CachedSecrets, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, '{{ secret("web", "db") }}')
    template = Template(spec, _reader(cached, spec))
    assert template.render()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    spec.destination.unlink()
    spec.destination.symlink_to(victim)
    cached.chain.save("web", "db", "s3cret-two")
    cached.load("web")
    assert not template.render()
    assert victim.read_text() == "keep" and spec.destination.is_symlink()
    assert template.counts.render_errors == 1


OTHER_UID = 65534  # another user's: owning a directory or link on the way to a destination


def test_a_directory_on_the_way_swapped_later_never_redirects_a_write(
    cached: CachedSecrets, tmp_path: Path
) -> None:
    # The destination is two levels under a directory another user owns: after the start's
    # checks, that user renames a directory on the way and puts a link to elsewhere in its
    # place. The write must not land in the other directory (root's, here).
    (tmp_path / "t.j2").write_text('{{ secret("web", "db") }}')
    (tmp_path / "theirs" / "app" / "conf").mkdir(parents=True)
    os.chown(tmp_path / "theirs", OTHER_UID, OTHER_UID)
    (tmp_path / "victim" / "conf").mkdir(parents=True)
    victim = tmp_path / "victim" / "conf" / "app.ini"
    victim.write_text("root's own")
    dest = tmp_path / "theirs" / "app" / "conf" / "app.ini"
    (spec,) = load_templates([f"{tmp_path}/t.j2:{dest}"], None, {})
    template = Template(spec, _reader(cached, spec))
    assert template.render() and dest.read_text() == "s3cret-one"
    (tmp_path / "theirs" / "app").rename(tmp_path / "theirs" / "old")
    (tmp_path / "theirs" / "app").symlink_to(tmp_path / "victim")
    os.lchown(tmp_path / "theirs" / "app", OTHER_UID, OTHER_UID)  # made by that user
    cached.chain.save("web", "db", "s3cret-two")
    cached.load("web")
    assert not template.render()
    assert victim.read_text() == "root's own" and template.counts.render_errors == 1
    # A link another user planted on the way before the start is refused at start.
    with pytest.raises(ValidationError, match="symbolic link another user owns"):
        load_templates([f"{tmp_path}/t.j2:{dest}"], None, {})
    os.lchown(tmp_path / "theirs" / "app", 0, 0)  # root's own link (/var/run -> /run): fine
    assert load_templates([f"{tmp_path}/t.j2:{dest}"], None, {})[0].directory is not None
    # The directory removed and made again at its path (a RuntimeDirectory) is still written.
    (tmp_path / "theirs" / "app").unlink()
    (tmp_path / "theirs" / "app" / "conf").mkdir(parents=True)
    assert template.render() and dest.read_text() == "s3cret-two"


def test_once_exits_1_when_a_command_fails_and_0_when_all_succeed(
    chain: CloudChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import KEY_ALIAS

    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    chain.save("web", "db", "v1")
    (tmp_path / "t.j2").write_text('{{ secret("web", "db") }}')
    config = tmp_path / "agent.rc"
    config.write_text("[template t]\nsource = t.j2\ndestination = out\ncommand = false\n")
    assert main(["--once", "--config", str(config)]) == 1
    assert (tmp_path / "out").read_text() == "v1"
    config.write_text("[template t]\nsource = t.j2\ndestination = out\ncommand = false\n"
                      "[template u]\nsource = t.j2\ndestination = out2\ncommand = true\n")  # fmt: skip
    assert main(["--once", "--config", str(config)]) == 0  # t unchanged: its command not run


def test_a_render_finished_while_the_agent_stops_is_not_written(
    cached: CachedSecrets, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, '{{ secret("web", "db") }}', command=("touch", str(tmp_path / "ran")))
    spec.destination.write_text("old")
    stopping = threading.Event()
    stopping.set()  # the next start writes it, and runs the command, since the bytes differ
    assert Template(spec, _reader(cached, spec), stopping).render()
    assert spec.destination.read_text() == "old" and not (tmp_path / "ran").exists()
