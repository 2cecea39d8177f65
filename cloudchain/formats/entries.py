"""Reading a file of NAME=value entries: the loop dotenv and env share. Blank lines and #
comments are skipped, each entry must start as its format's pattern says on a line of its
own, a name given twice is refused, and how a value is written (its quoting, the lines it
spans) is the format's own reader's business."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import ValidationError

# (text, where the value starts, the name, its line, where that line ends, the values so far)
# -> (the value, where its last line ends, that line's number)
ValueReader = Callable[[str, int, str, int, int, dict[str, str]], tuple[str, int, int]]


def parse_entries(
    text: str, entry: re.Pattern[str], what: str, shape: str, read_value: ValueReader
) -> dict[str, str]:
    """Every entry of text, in order; what names the format in errors, shape an entry."""
    values: dict[str, str] = {}
    pos, lineno = 0, 1
    while pos < len(text):
        end_of_line = text.find("\n", pos)
        end_of_line = len(text) if end_of_line < 0 else end_of_line
        line = text[pos:end_of_line]
        if not line.strip() or line.lstrip().startswith("#"):
            pos, lineno = end_of_line + 1, lineno + 1
            continue
        match = entry.match(text, pos)
        if match is None or match.end() > end_of_line:
            raise ValidationError(f"{what} line {lineno} is not {shape}")
        name, first_line = match.group(1), lineno
        value, pos, lineno = read_value(text, match.end(), name, lineno, end_of_line, values)
        if name in values:
            raise ValidationError(
                f"{what} entry {name} is given twice (again on line {first_line})"
            )
        values[name] = value
        pos, lineno = pos + 1, lineno + 1
    return values
