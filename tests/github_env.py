"""The Actions runner's own reading of a $GITHUB_ENV file and of workflow commands, ported
line by line from actions/runner (src/Runner.Worker/FileCommandManager.cs, SetEnvFileCommand;
src/Runner.Common/ActionCommand.cs, the data unescaping), so that the tests read what
--format github writes exactly as the runner does. No maintained reader of these files exists
outside the runner (C#) itself; this port follows its Linux build (LF line ends only).
"""

from __future__ import annotations


class RunnerError(Exception):
    """The runner would fail the step: the file is not in its format."""


def _read_line(text: str, index: int) -> tuple[str | None, int, str | None]:
    """ReadLine: the line at index (without its LF), the next index, and the newline."""
    if index >= len(text):
        return None, index, None
    lf = text.find("\n", index)
    if lf < 0:
        return text[index:], len(text), None
    return text[index:lf], lf + 1, "\n"


def read_github_env(text: str) -> dict[str, str]:
    """SetEnvFileCommand.ProcessCommand: NAME=VALUE lines and NAME<<DELIMITER heredocs."""
    env: dict[str, str] = {}
    text = text.removeprefix("\ufeff")  # File.ReadAllText drops a UTF-8 byte-order mark
    line, index, _ = _read_line(text, 0)
    while line is not None:
        if line:
            equals, heredoc = line.find("="), line.find("<<")
            if equals >= 0 and (heredoc < 0 or equals < heredoc):
                name, value = line.split("=", 1)
                env[name] = value
            elif heredoc >= 0 and (equals < 0 or heredoc < equals):
                name, delimiter = line.split("<<", 1)
                if not name or not delimiter:
                    raise RunnerError(f"Invalid environment variable format '{line}'")
                start = end = index
                temp, index, newline = _read_line(text, index)
                while temp != delimiter:
                    if temp is None:
                        raise RunnerError(f"Matching delimiter not found '{delimiter}'")
                    end = index - len(newline or "")
                    temp, index, newline = _read_line(text, index)
                env[name] = text[start:end] if end > start else ""
            else:
                raise RunnerError(f"Invalid environment variable format '{line}'")
        line, index, _ = _read_line(text, index)
    return env


# ActionCommand.cs: the escapes of a command's data, undone in this order.
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))


def read_masks(stdout: str) -> list[str]:
    """The values `::add-mask::` lines on stdout register with the runner's secret masker."""
    masks = []
    for line in stdout.splitlines():
        if line.startswith("::add-mask::"):
            data = line.removeprefix("::add-mask::")
            for escaped, char in _DATA_ESCAPES:
                data = data.replace(escaped, char)
            masks.append(data)
    return masks
