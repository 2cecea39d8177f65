"""The --generate flag group: declared once here, for --save (and --rotate) to accept.

An action that takes a generated value lists GENERATE_DESTS in its accepts and calls
generated_value(args) instead of reading the value. Nothing here imports the generator (or
the `secrets` module) until a value is made: building the parser must not.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import ValidationError
from .spec import FROM_STDIN_OR_PROMPT, Option, Section

if TYPE_CHECKING:
    from ..generate import PasswordSpec

GENERATE = Option(
    ("--generate",),
    "--save, --rotate: make the value with the secrets module instead of reading it (never "
    "printed unless --show)",
)
SHAPE = (
    Option(("--length",), "--generate: characters (default 32)", {"type": int, "metavar": "N"}),
    Option(
        ("--exclude-chars",),
        "--generate: characters never to use",
        {"metavar": "CHARS"},
    ),
    Option(("--no-numbers",), "--generate: no digits"),
    Option(("--no-punctuation",), "--generate: no punctuation"),
    Option(("--no-uppercase",), "--generate: no upper-case letters"),
    Option(("--no-lowercase",), "--generate: no lower-case letters"),
    Option(("--include-space",), "--generate: the space may be used too"),
    Option(
        ("--require-each-type",),
        "--generate: at least one character of each included class (default; "
        "--no-require-each-type turns it off)",
        {"action": argparse.BooleanOptionalAction, "default": None},
    ),
    Option(
        ("--charset",),
        "--generate: draw from one set instead of the classes",
        {"choices": ("hex", "base64url", "alnum")},
    ),
    Option(("--show",), "--generate: also print the generated value to stdout"),
)
OPTIONS = (GENERATE, *SHAPE)
# What an action that can generate its value accepts.
GENERATE_DESTS = tuple(option.dest for option in OPTIONS)

SECTION = Section("generated values", options=OPTIONS)


def password_spec(args: argparse.Namespace) -> PasswordSpec | None:
    """The PasswordSpec the flags ask for (None: no --generate), refused before any AWS call
    when no value can satisfy it or a flag makes no sense with it."""
    if not args.generate:
        given = [o.flag for o in SHAPE if getattr(args, o.dest) not in (None, False)]
        if given:
            raise ValidationError(f"{given[0]} goes with --generate")
        return None
    if getattr(args, "save", None) not in (None, FROM_STDIN_OR_PROMPT, False):
        raise ValidationError("--generate makes the value: give --save no value (and no '-')")
    if getattr(args, "binary", None):
        raise ValidationError("--generate makes text: it does not go with --binary")
    from ..generate import DEFAULT_LENGTH, PasswordSpec, check_spec

    spec = PasswordSpec(
        length=DEFAULT_LENGTH if args.length is None else args.length,
        exclude_chars=args.exclude_chars or "",
        numbers=not args.no_numbers,
        punctuation=not args.no_punctuation,
        uppercase=not args.no_uppercase,
        lowercase=not args.no_lowercase,
        include_space=args.include_space,
        require_each_type=args.require_each_type is not False,
        charset=args.charset,
    )
    check_spec(spec)
    return spec


def generated_value(spec: PasswordSpec) -> str:
    """A new value as spec says."""
    from ..generate import generate

    return generate(spec)
