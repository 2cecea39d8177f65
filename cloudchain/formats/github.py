"""The github format: a `$GITHUB_ENV` file, which the Actions runner reads after the step and
turns into environment variables for the job's later steps.

Each value is written in the runner's heredoc form, `NAME<<DELIMITER`, the value, then the
delimiter on a line of its own, with a delimiter drawn at random for each value and checked
not to occur in it, so no value can end its entry early and set another variable. The runner
takes everything between the two lines, so any text is carried except what no environment
variable can hold (NUL), and a value ending in a carriage return (a Windows runner reads the
CRLF before the delimiter as the line's end and drops it).

--github-mask adds `::add-mask::` workflow commands, printed on stdout before anything is
written, so that the runner masks each value in the job's logs from then on: one per line of
the value, since the runner masks logs line by line, with `%`, CR and LF escaped as the
runner's command syntax wants (`%25`, `%0D`, `%0A`).
"""

from __future__ import annotations

from collections.abc import Mapping


def github_problem(value: str) -> str | None:
    """Why the runner could not read value back exactly (beyond the environment's limits)."""
    if value.endswith("\r"):
        return "ends in a carriage return, which a Windows runner drops"
    return None


def _delimiter(value: str) -> str:
    import secrets  # here, not at import: the parser (and the agent fast path) loads this module

    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        if delimiter not in value:
            return delimiter


def github_entry(name: str, value: str) -> str:
    """One `NAME<<DELIMITER` entry."""
    delimiter = _delimiter(value)
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def render_github(entries: Mapping[str, str]) -> str:
    """The $GITHUB_ENV file for entries (variable name -> text), in order."""
    return "".join(github_entry(name, value) for name, value in entries.items())


def _command_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def mask_lines(values: list[str]) -> str:
    """`::add-mask::` commands for every line of every value (blank lines need none)."""
    lines: dict[str, None] = {}  # in order, each once
    for value in values:
        for line in value.split("\n"):
            line = line.removesuffix("\r")
            if line.strip():
                lines[line] = None
    return "".join(f"::add-mask::{_command_data(line)}\n" for line in lines)
