"""Render a template with secrets in it: --render TEMPLATE [-o FILE] [--dry-run]."""

from __future__ import annotations

from .io import read_file, utf8_text, write_output, write_stdout
from .outfile import check_output
from .spec import EXIT_OK, Action, Invocation, Section

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
    text = render(inv.chain, source, name)  # whole before any of it is written
    write_output(args.output, text, f"rendered {name} to {args.output}")
    return EXIT_OK


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
            accepts=("output", "dry_run"),
            kwargs={"metavar": "TEMPLATE"},
        ),
    ),
)
