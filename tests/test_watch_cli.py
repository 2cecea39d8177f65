"""`cchain --exec --watch`'s command line: its flags go before `--`, after --exec or before it,
and bad ones are one line, exit 2, before any AWS call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudchain.cli import main
from cloudchain.commands.exec_argv import split_exec
from cloudchain.commands.watch import leading_watch_options
from cloudchain.supervise import exit_status


def test_watch_flags_after_exec_are_cchains_and_the_rest_is_the_command() -> None:
    argv = ["-e", "web", "--exec", "--watch", "--on-change", "signal:HUP", "--interval=5s",
            "--", "app", "--watch"]  # fmt: skip
    own, command = split_exec(argv)
    assert own == ["-e", "web", "--exec", "--watch", "--on-change", "signal:HUP", "--interval=5s"]
    assert command == ["app", "--watch"]
    assert split_exec(["-e", "web", "--exec", "--", "--watch"]) == (
        ["-e", "web", "--exec"], ["--watch"])  # fmt: skip
    assert leading_watch_options(["--watch=x"]) == []  # a switch takes no value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on-change", "reload"], "--on-change must be restart, exit or signal:NAME"),
        (["--on-change", "signal:NOPE"], "'NOPE' is not a signal to send"),
        (["--on-change", "signal:KILL"], "'KILL' is not a signal to send"),
        (["--interval", "0s"], "--interval: a duration must be more than zero"),
        (["--grace", "soon"], "--grace: 'soon' is not a duration"),
        # Past what a wait can hold (threading.TIMEOUT_MAX): an OverflowError traceback at
        # the first stop, leaving the child running, before they were bounded.
        (["--grace", "20000w"], "--grace: at most 365d, not '20000w'"),
        (["--interval", "20000w"], "--interval: at most 365d, not '20000w'"),
    ],
)
def test_bad_watch_options_are_one_line_before_any_aws_call(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No moto here: an AWS call would fail differently (and slowly).
    code = main(["-e", "web", "--exec", "--watch", *args, "--", "true"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [f"cchain: error: {err.split('error: ', 1)[1].strip()}"]
    assert message in err


def test_watch_options_without_watch_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-e", "web", "--grace", "5s", "--exec", "--", "true"]) == 2
    assert capsys.readouterr().err == "cchain: error: --grace goes with --exec --watch\n"
    assert main(["-e", "web", "-u", "a", "--read", "--watch"]) == 2
    assert "--watch goes with --exec" in capsys.readouterr().err


def test_a_childs_status_is_reported_as_a_shell_does() -> None:
    assert exit_status(3) == 3
    assert exit_status(-15) == 143


def test_a_watch_the_agent_drops_goes_to_aws_once_and_asks_the_agent_again() -> None:
    # An agent at its connection cap closes waiting connections first, and anyone on the host
    # can open connections: one dropped long-poll used to end watching through the agent for
    # good (with no AWS credentials, as behind an agent, nothing was seen to change again).
    from types import SimpleNamespace

    from cloudchain.agent.client import AgentUnavailable
    from cloudchain.commands.watch import Plan, Watcher
    from cloudchain.supervise import Events

    class Agent:
        calls = 0

        def watch(self, service: str, since: str | None, timeout: float) -> tuple[str, bool]:
            self.calls += 1
            if self.calls <= 2:
                raise AgentUnavailable("cannot reach the agent (the answer ended early)")
            return "t2", True

    checks: list[str] = []
    chain = SimpleNamespace(change_check=lambda s: checks.append(s) or SimpleNamespace(token="t1"))
    inv = SimpleNamespace(agent=Agent(), chain=chain, args=SimpleNamespace(service="web"))
    events = Events()
    watcher = Watcher(inv, Plan("restart", 0, 0.01, 1.0), events)  # type: ignore[arg-type]
    assert watcher.token("t0", 60.0) == "t1"  # dropped: AWS this round, after --interval
    assert watcher.token("t1", 60.0) == "t1"  # dropped again: one warning per outage
    assert watcher.token("t1", 60.0) == "t2"  # the agent is asked again, and answers
    assert checks == ["web", "web"]
    kinds = [events.next(0) for _ in range(3)]
    assert [e.kind for e in kinds if e is not None] == ["warning", "recovered"]


def test_a_watched_command_that_cannot_run_exits_127_or_126_as_exec_does(
    chain: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # docs/cli.md's exit codes: 127 not found, 126 cannot be run; --watch exited 1 with
    # "No such file or directory: /nonexistent" instead.
    from helpers import KEY_ALIAS

    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    chain.save("web", "a", "one")
    capsys.readouterr()
    for command, code, why in (
        ("/nonexistent", 127, "No such file or directory"),
        ("/etc/passwd", 126, "Permission denied"),
    ):
        assert main(["-e", "web", "--exec", "--watch", "--", command]) == code
        assert capsys.readouterr().err == f"cchain: error: cannot run {command}: {why}\n"


def test_an_unexpected_error_while_watching_kills_the_child_instead_of_orphaning_it(
    chain: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An error no branch expects (here: a bug in reading the new values) ended cchain and
    # left the child running, unsupervised, with the old values.
    import threading
    import time

    from helpers import KEY_ALIAS

    from cloudchain.commands import execute

    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    chain.save("web", "a", "one")
    real, reads = execute.build, []

    def build(*args: Any) -> Any:
        reads.append(1)
        if len(reads) > 1:
            raise RuntimeError("a bug")
        return real(*args)

    monkeypatch.setattr(execute, "build", build)
    pid_file = tmp_path / "pid"
    threading.Timer(0.5, lambda: chain.save("web", "a", "two")).start()
    command = ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"]
    with pytest.raises(RuntimeError):
        main(["-e", "web", "--exec", "--watch", "--interval", "100ms", "--", *command])
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # killed, and reaped by its waiting thread
    assert not Path(f"/proc/{pid}").exists()
