"""Render a template with secrets in it: --render TEMPLATE [-o FILE] [--dry-run]."""

from __future__ import annotations

import argparse

from ..errors import ValidationError
from ..render_limits import DEFAULT_MAX_OUTPUT, DEFAULT_MAX_SECONDS, RenderLimits, parse_size
from .io import read_file, utf8_text, write_output, write_stdout
from .outfile import check_output
from .spec import EXIT_OK, Action, Invocation, Option, Section

# Far more than any configuration file a template renders.
MAX_TEMPLATE_BYTES = 1024 * 1024


def render_template(inv: Invocation) -> int:
    """Render TEMPLATE ('-': stdin) to stdout or -o FILE; with --dry-run, list what it reads."""
    from ..render import render, wanted

    args = inv.args
    name = args.render
    source = utf8_text(read_file(name, "the template", MAX_TEMPLATE_BYTES), f"the template {name}")
    if args.dry_run:
        literal, computed = wanted(source, name)
        lines = [item.describe() for item in literal]
        lines += [f"computed\tline {line}" for line in computed]
        write_stdout("".join(f"{line}\n" for line in lines))
        return EXIT_OK
    if args.output:
        check_output(args.output)  # refused before a secret is read; checked again on writing
    limits = RenderLimits(
        max_output=args.max_output or DEFAULT_MAX_OUTPUT,
        max_seconds=args.max_time or DEFAULT_MAX_SECONDS,
    )
    text = render(inv.chain, source, name, limits)  # whole before any of it is written
    write_output(args.output, text, f"rendered {name} to {args.output}")
    return EXIT_OK


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


SECTION = Section(
    "templates",
    actions=(
        Action(
            "render",
            ("--render",),
            "render a Jinja2 TEMPLATE ('-': stdin) that reads secrets with "
            '{{ secret("service", "user") }} and {{ services("service") }} (needs '
            "cloudchain[template])",
            render_template,
            accepts=("output", "dry_run", "max_output", "max_time"),
            kwargs={"metavar": "TEMPLATE"},
        ),
    ),
    options=(
        Option(
            ("--max-output",),
            f"--render: refuse output over SIZE bytes (1024, 16MiB; default {DEFAULT_MAX_OUTPUT})",
            {"type": _size, "metavar": "SIZE"},
        ),
        Option(
            ("--max-time",),
            f"--render: stop rendering after SECONDS (default {DEFAULT_MAX_SECONDS:g})",
            {"type": _seconds, "metavar": "SECONDS"},
        ),
    ),
)
