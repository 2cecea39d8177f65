"""--render through the installed cchain: errors that could quote a secret, and templates that
would take the host's memory, time or disk, each end in one line with nothing written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from support import Emulator

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ {}[secret('app', 'db') | upper] }}", "line 1: UndefinedError"),
        ("a\n{{ {}[secret('app', 'db').split(':')[1]] }}", "line 2: UndefinedError"),
        ("{{ secret('app') }}", "line 1: secret() takes a service and a user"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "line 1: recursion too deep"),
        ("{{ 'x' * 3000000000 }}", "line 1: the output would be over 16777216 bytes"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
         "line 1: the output would be over 1024 bytes (--max-output)"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "line 1: rendering took longer than 1 s (--max-time)"),
    ],
)  # fmt: skip
def test_a_failing_render_is_one_line_quotes_nothing_and_writes_nothing(
    emulator: Emulator, template: str, message: str
) -> None:
    assert emulator.run("-e", "app", "-u", "db", "--save", "-", stdin="user:hunter2").code == 0
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "t.j2", Path(folder) / "out"
        source.write_text(template)
        size = "1KiB" if "1024" in message else "16MiB"
        result = emulator.run(
            "--render", str(source), "-o", str(out), "--max-output", size, "--max-time", "1"
        )
        assert result.code == 2, result.err
        assert result.err.startswith(f"cchain: error: template {source} {message}")
        assert result.err.count("\n") == 1 and result.out == ""
        for leaked in ("hunter2", "HUNTER2", "USER:", "<locals>", "lambda", "Traceback"):
            assert leaked not in result.err
        assert sorted(p.name for p in Path(folder).iterdir()) == ["t.j2"]
