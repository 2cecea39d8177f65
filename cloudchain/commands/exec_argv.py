"""The command line around --exec: what is cchain's, what is the command's, and cchain's own
options written after --exec by mistake."""

from __future__ import annotations

import argparse

from .watch import leading_watch_options


def split_exec(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split argv into cchain's own words and the command after --exec (None: no --exec)."""
    # Everything after --exec (and an optional --) is the command, never cchain's options:
    # argparse's REMAINDER would let it take words meant for cchain, or the other way round.
    if "--exec" not in argv:
        return argv, None
    at = argv.index("--exec")
    command = argv[at + 1 :]
    own = leading_watch_options(command)  # --exec --watch [...] -- CMD: cchain's
    command = command[len(own) :]
    return argv[: at + 1] + own, command[1:] if command[:1] == ["--"] else command


def _is_own_option(parser: argparse.ArgumentParser, word: str) -> bool:
    """Whether word is one of cchain's own options (or an abbreviation argparse accepts)."""
    if not word.startswith("-") or word in ("-", "--"):
        return False
    flag = word.split("=", 1)[0]
    if flag in parser._option_string_actions:
        return True
    if flag.startswith("--"):
        return any(o.startswith(flag) for o in parser._option_string_actions if o[:2] == "--")
    return flag[:2] in parser._option_string_actions  # -eweb: a short option and its value


def misplaced_after_exec(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """cchain's options written after --exec: before its `--`, or as the command's first word.

    `--exec --pristine -- env` would otherwise run `--pristine`; an option only counts when
    the command starts with it, so `--exec -- grep -e x` keeps its own -e.
    """
    if "--exec" not in argv:
        return []
    rest = argv[argv.index("--exec") + 1 :]
    rest = rest[len(leading_watch_options(rest)) :]
    if rest[:1] == ["--"]:
        before = rest[1:2]  # the command's first word
    elif rest and _is_own_option(parser, rest[0]):
        before = rest[: rest.index("--")] if "--" in rest else rest[:1]
    else:
        return []
    return [word.split("=", 1)[0] for word in before if _is_own_option(parser, word)]


# The actions that take -e more than once: the services are merged, a later one winning.
SEVERAL_SERVICES = ("exec", "export", "resolve")


class ServiceFlag(argparse.Action):
    """-e/--service, repeatable: args.services keeps every one in order, args.service the
    first (what the actions that take one service read)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        namespace.services = [*getattr(namespace, "services", ()), str(values)]
        namespace.service = namespace.services[0]


def services_problem(action: str, services: list[str]) -> str | None:
    """What is wrong with the -e flags given for action, or None."""
    repeated = sorted({s for s in services if services.count(s) > 1})
    if repeated:
        return f"-e {repeated[0]} is given twice"
    if len(services) > 1 and action not in SEVERAL_SERVICES:
        return (f"--{action} takes one -e/--service, not {len(services)} (only "
                "--exec, --export and --resolve take several)")  # fmt: skip
    return None
