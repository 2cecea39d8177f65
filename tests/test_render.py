"""cchain --render: Jinja2 templates with secrets, in the sandbox (in-process, moto)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, SecretNotFoundError, ValidationError
from cloudchain.cli import main
from cloudchain.render import render, wanted

TEMPLATE = """\
[database]
password = {{ secret("billing", "db") }}
{% for user, value in services("web") | dictsort %}
{{ user | upper }} = {{ value | replace("-", "_") }}
{% endfor %}
token_length = {{ secret("billing", "token") | length }}
"""


@pytest.fixture
def seeded(chain: CloudChain) -> CloudChain:
    chain.save("billing", "db", "p@ss")
    chain.save("billing", "token", "abcdef")
    chain.save("web", "a", "x-1")
    chain.save("web", "b", "y-2")
    return chain


def test_loops_filters_and_secrets_render(seeded: CloudChain) -> None:
    assert render(seeded, TEMPLATE, "app.ini.j2") == (
        "[database]\npassword = p@ss\n\nA = x_1\n\nB = y_2\n\ntoken_length = 6\n"
    )


def test_every_secret_is_fetched_once_before_rendering(seeded: CloudChain) -> None:
    calls = CallCounter(seeded._dynamodb, seeded._kms)
    twice = TEMPLATE + '{{ secret("billing", "db") }}{{ services("web") | length }}\n'
    render(seeded, twice, "t")
    assert calls.count("GetItem") == 2  # billing/db and billing/token, once each
    assert calls.count("Query") == 1  # the web service, once
    assert calls.count("Decrypt") == 4


def test_a_computed_call_is_fetched_when_reached(seeded: CloudChain) -> None:
    source = '{% set who = "d" ~ "b" %}{{ secret("billing", who) }}'
    assert wanted(source, "t") == ([], [1])
    assert render(seeded, source, "t") == "p@ss"


def test_dry_run_lists_what_a_template_reads(seeded: CloudChain) -> None:
    found, computed = wanted(TEMPLATE + '{{ secret("billing", "db", version=1) }}', "t")
    assert [w.describe() for w in found] == [
        "secret\tbilling\tdb",
        "service\tweb",
        "secret\tbilling\ttoken",
        "secret\tbilling\tdb\tversion 1",
    ]
    assert computed == []


def test_a_missing_secret_is_not_found_naming_it(seeded: CloudChain) -> None:
    with pytest.raises(SecretNotFoundError, match="billing/nobody"):
        render(seeded, 'x={{ secret("billing", "nobody") }}', "t")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("line one\n{{ ''.__class__.__mro__ }}", "line 2: access to attribute '__class__'"),
        ("{{ ().__class__.__base__.__subclasses__() }}", "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "line 1"),
        ('{% for x in services("web") %}\n{{ x.nope.deeper }}{% endfor %}', "line 2"),
        ("ok\n{{ undefined_name }}", "line 2: 'undefined_name' is undefined"),
        ("{% if %}", "line 1: "),
        ('{{ services("web").update({"a": 1}) }}', "unsafe"),
    ],
)
def test_sandbox_escapes_and_template_errors_are_refused_with_the_line(
    seeded: CloudChain, source: str, message: str
) -> None:
    with pytest.raises(
        ValidationError, match=f"template t {message}" if "line" in message else message
    ):
        render(seeded, source, "t")


def test_an_error_that_would_quote_a_secret_withholds_its_message(seeded: CloudChain) -> None:
    with pytest.raises(ValidationError) as info:
        render(seeded, '{{ {}[secret("billing", "db")] }}', "t")
    assert "p@ss" not in str(info.value)
    assert "withheld" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_binary_secret_is_refused(seeded: CloudChain) -> None:
    seeded.save("bin", "cert", b"\x00\x01")
    with pytest.raises(ValidationError, match="binary"):
        render(seeded, '{{ secret("bin", "cert") }}', "t")


def test_the_cli_writes_a_private_file_and_nothing_on_failure(
    seeded: CloudChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "app.ini.j2"
    template.write_text(TEMPLATE)
    out = tmp_path / "app.ini"
    assert main(["--render", str(template), "-o", str(out), "--key-alias", KEY_ALIAS]) == 0
    assert out.read_text().startswith("[database]\npassword = p@ss\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    template.write_text(TEMPLATE + '{{ secret("billing", "nobody") }}')
    out.unlink()
    assert main(["--render", str(template), "-o", str(out)]) == 3
    assert not out.exists()
    assert "billing/nobody" in capsys.readouterr().err
    template.write_text("{% for %}")
    assert main(["--render", str(template)]) == 2
    assert main(["--render", str(template), "--dry-run"]) == 2


def test_without_jinja2_the_command_says_how_to_install_it(
    seeded: CloudChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jinja2", None)
    monkeypatch.setitem(sys.modules, "jinja2.sandbox", None)
    template = tmp_path / "t"
    template.write_text("x")
    assert main(["--render", str(template)]) == 1
    err = capsys.readouterr().err
    assert "templates need Jinja2" in err and "cloudchain[template]" in err
