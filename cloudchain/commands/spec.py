"""What a command module declares (its actions and options), the exit codes, the shared
configuration flags, and the Invocation a handler receives. Below cli.py and every command
module, so neither imports the other.

Nothing here imports the AWS stack: building the parser, and the agent fast path, must not.
The declarations are NamedTuples rather than dataclasses for the same reason: importing
dataclasses costs a read through the agent a tenth of its time.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..agent.client import AgentClient
    from ..chain import CloudChain
    from ..results import Secret

PROG = "cchain"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_DUE = 5  # --due: a secret is due for rotation
EXIT_CANNOT_EXECUTE = 126
EXIT_COMMAND_NOT_FOUND = 127
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

# Marks `--save` given without a value: read stdin, or prompt on a terminal.
FROM_STDIN_OR_PROMPT = "\0from-stdin-or-prompt"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that bulk work stops as it does on Ctrl-C."""


SWITCH: dict[str, Any] = {"action": "store_true"}  # shared, never changed


class Option(NamedTuple):
    """One flag: its names, help and argparse settings (default: a switch)."""

    flags: tuple[str, ...]
    help: str
    kwargs: dict[str, Any] = SWITCH

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds it."""
        if "dest" in self.kwargs:
            return str(self.kwargs["dest"])
        return self.flag[2:].replace("-", "_")

    @property
    def flag(self) -> str:
        """The long flag, for messages."""
        return next(f for f in self.flags if f.startswith("--"))


class Action(NamedTuple):
    """One action (exactly one is chosen per run): its flag, the handler that runs it, what it
    needs named, and the options (by destination) that go with it."""

    name: str
    flags: tuple[str, ...]
    help: str
    run: Callable[[Invocation], int]
    # What it needs named: "row" (-u and -e), "service" (-e), or "" (nothing).
    needs: str = ""
    accepts: tuple[str, ...] = ()
    # What a successful run changed, for the agent to forget: "row", "service" or "".
    changes: str = ""
    kwargs: dict[str, Any] = SWITCH

    @property
    def option(self) -> Option:
        """The action's own flag, as an option."""
        return Option(self.flags, self.help, self.kwargs)


class Section(NamedTuple):
    """A command module's declarations: one titled section of `cchain --help`."""

    title: str
    actions: tuple[Action, ...] = ()
    options: tuple[Option, ...] = ()


# CLI flag destination -> Config field, for the flags that configure the CloudChain.
CONFIG_FLAGS = {
    "region": "region_name",
    "endpoint_url": "endpoint_url",
    "kms_endpoint_url": "kms_endpoint_url",
    "table": "tablename",
    "key_alias": "keyalias",
    "profile": "profile_name",
    "history_size": "history_size",
    "max_workers": "max_workers",
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "max_attempts": "max_attempts",
    "allow_legacy": "allow_legacy",
    "recovery_days": "recovery_days",
    "replica_region": "replica_regions",
    "failover_cooldown": "failover_cooldown",
}

CONFIGURATION = Section(
    "configuration (flag > environment > file > default)",
    options=(
        Option(("--config",), "config file (default ~/.cchainrc)", {"metavar": "PATH"}),
        Option(("--region",), "AWS region", {"metavar": "REGION"}),
        Option(("--endpoint-url",), "DynamoDB endpoint", {"metavar": "URL"}),
        Option(("--kms-endpoint-url",), "KMS endpoint", {"metavar": "URL"}),
        Option(("--table",), "DynamoDB table (default safedb)", {"metavar": "TABLE"}),
        Option(("--key-alias",), "KMS key alias used for saving", {"metavar": "ALIAS"}),
        Option(("--profile",), "AWS profile from ~/.aws/config", {"metavar": "PROFILE"}),
        Option(
            ("--history-size",),
            "versions a new secret keeps (default 10); with --save, what that secret keeps from now on",
            {"type": int, "metavar": "N"},
        ),
        Option(("--max-workers",), "parallel calls (default 16)", {"type": int, "metavar": "N"}),
        Option(
            ("--connect-timeout",),
            "seconds to connect (default 3)",
            {"type": float, "metavar": "S"},
        ),
        Option(
            ("--read-timeout",),
            "seconds to wait for a reply (default 10)",
            {"type": float, "metavar": "S"},
        ),
        Option(
            ("--max-attempts",),
            "attempts per AWS call (default 5)",
            {"type": int, "metavar": "N"},
        ),
        Option(
            ("--recovery-days",),
            "days a deleted secret can be restored (default 30)",
            {"type": int, "metavar": "N"},
        ),
        Option(
            ("--replica-region",),
            "a replica region reads fail over to, in order (repeatable); with --setup, one to "
            "add to the global table",
            {"action": "append", "metavar": "REGION"},
        ),
        Option(
            ("--failover-cooldown",),
            "seconds a region that failed is skipped (default 30)",
            {"type": float, "metavar": "S"},
        ),
        Option(
            ("--no-legacy",),
            "refuse legacy rows, not bound to their row (allow_legacy = false)",
            {"dest": "allow_legacy", "action": "store_const", "const": False},
        ),
    ),
)


class Invocation:
    """One run of cchain: the parsed arguments, the command after --exec, the agent that
    serves reads (when one is configured and may), and the CloudChain the arguments
    configure, built on first use: a read through the agent never imports botocore."""

    def __init__(
        self,
        args: argparse.Namespace,
        command: list[str] | None = None,
        agent: AgentClient | None = None,
        on_chain: Callable[[], None] | None = None,
    ) -> None:
        self.args = args
        self.command = command
        self.agent = agent
        self._on_chain = on_chain  # run once, before the AWS path starts (logging, say)
        self._chain: CloudChain | None = None
        self._lock = threading.Lock()  # reads of several services run in parallel

    def overrides(self) -> dict[str, Any]:
        """The configuration given as flags, by Config field."""
        return {field: getattr(self.args, flag) for flag, field in CONFIG_FLAGS.items()}

    @property
    def chain(self) -> CloudChain:
        """The CloudChain for the file, environment and flags."""
        with self._lock:
            if self._chain is None:
                from ..chain import CloudChain

                if self._on_chain is not None:
                    self._on_chain()
                self._chain = CloudChain.from_config(self.args.config, **self.overrides())
            return self._chain

    def _agent_down(self, why: Exception) -> None:
        import sys

        with self._lock:
            if self.agent is not None:  # one warning, and no second try
                print(f"{PROG}: warning: {why}; reading from AWS directly", file=sys.stderr)
                self.agent = None

    def read(self, service: str, user: str, version: int | None) -> Secret:
        """A secret: through the agent when there is one, else from AWS."""
        agent = self.agent  # another thread may drop it meanwhile
        if agent is not None:
            from ..agent.client import AgentUnavailable

            try:
                return agent.read(service, user, version)[0]
            except AgentUnavailable as why:
                self._agent_down(why)
        return self.chain.read(service, user, version=version)

    def export(self, service: str, tags: dict[str, str]) -> dict[str, Secret]:
        """Every secret of a service: through the agent when there is one, else from AWS."""
        agent = self.agent  # another thread may drop it meanwhile
        if agent is not None:
            from ..agent.client import AgentUnavailable

            try:
                return agent.export(service, tags)
            except AgentUnavailable as why:
                self._agent_down(why)
        return self.chain.export(service, tags=tags)
