"""cchain --render: Jinja2 templates with secrets, in the sandbox (in-process, moto)."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, SecretNotFoundError, ValidationError
from cloudchain.cli import main
from cloudchain.render import render, wanted
from cloudchain.render_limits import RenderLimits, parse_size

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


# -- errors say where and what kind, never a value or an internal name ---------------------------


@pytest.mark.parametrize(
    ("source", "leaked"),
    [
        ("{{ {}[secret('billing', 'db') | upper] }}", "P@SS"),
        ("x\n{{ {}[secret('billing', 'db').split('@')[1]] }}", "'ss'"),
        ("{{ {}[secret('billing', 'db')[::-1]] }}", "ss@p"),
        ("{{ secret('billing', 'db') | int }}{{ 1 / 0 }}", "p@ss"),
        ("{{ (secret('billing', 'db') ~ 'x') | attr('nope') | string | int(base=99) }}", "base"),
        ("{{ services('web') | dictsort | map(attribute='x.y') | list | join(1 / 0) }}", "y-2"),
    ],
)
def test_once_a_secret_is_read_no_runtime_message_is_shown(
    seeded: CloudChain, source: str, leaked: str
) -> None:
    with pytest.raises(ValidationError) as info:
        render(seeded, source, "t")
    message = str(info.value)
    assert leaked not in message
    assert re.fullmatch(r"template t line \d: \w+( \([a-z ,]+\))?(; the message was withheld: "
                        r"the template read secrets)?", message), message  # fmt: skip
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_the_kind_and_line_of_a_withheld_error_are_said(seeded: CloudChain) -> None:
    with pytest.raises(ValidationError) as info:
        render(seeded, "ok\n\n{{ {}[secret('billing', 'db') | upper] }}", "t")
    assert str(info.value) == (
        "template t line 3: UndefinedError (an undefined name, attribute or key); the message "
        "was withheld: the template read secrets"
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ secret('billing') }}",
        "{{ secret('billing', 'db', 1, 2) }}",
        "{{ secret('billing', 'db', user='x') }}",
        "{{ secret(1, 2) }}",
        "{{ services() }}",
        "{{ services('web', 'x') }}",
        "{{ 'a' | replace }}",
        "{{ range() }}",
    ],
)
def test_a_wrong_call_names_no_internal_function(seeded: CloudChain, source: str) -> None:
    with pytest.raises(ValidationError) as info:
        render(seeded, source, "t")
    message = str(info.value)
    assert message.startswith("template t line 1: ")
    for internal in ("<locals>", "<lambda>", "render.", "positional argument", "do_replace"):
        assert internal not in message


def test_a_wrong_call_of_secret_says_how_to_call_it(seeded: CloudChain) -> None:
    with pytest.raises(ValidationError, match=r"line 2: secret\(\) takes a service and a user"):
        render(seeded, "\n{{ secret('billing') }}", "t")


# -- bounded output, time, memory and recursion ---------------------------------------------------

NESTED = "{% for i in range(3000) %}{% for j in range(3000) %}0123456789{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 3000000000 }}", "the output would be over 16777216 bytes (--max-output)"),
        ("{{ [1, 2] * 3000000000 }}", "the output would be over 16777216 bytes"),
        ("{% set n = 3000000000 %}{{ 'x' * n }}", "the output would be over 16777216 bytes"),
        ("{{ 'x' | center(3000000000) }}", "over 16777216 bytes"),
        ("{{ 'x'.ljust(3000000000) }}", "over 16777216 bytes"),
        ("{{ 'x' | indent(3000000000, first=True) }}", "over 16777216 bytes"),
        ("{{ 'x' | wordwrap(3000000000) }}", "over 16777216 bytes"),
        ("{{ 'x' | truncate(3000000000) }}", "over 16777216 bytes"),
        ("{{ '%(a)3000000000s' % {'a': 1} }}", "over 16777216 bytes"),
        ("{{ '%3000000000s' % 'x' }}", "over 16777216 bytes"),
        ("{{ 2 ** 3000000 }}", "a power larger than 1000000 bits"),
        ("{% set n = 10 ** 10 %}{{ n ** n }}", "a power larger than 1000000 bits"),
        (NESTED, "the output would be over 16777216 bytes (--max-output)"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion too deep"),
    ],
)
def test_what_would_exhaust_memory_or_recursion_is_one_line(
    seeded: CloudChain, source: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        render(seeded, source, "t")
    assert str(info.value).startswith("template t line 1: ")
    assert message in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_the_output_bound_is_exact(seeded: CloudChain) -> None:
    source = "{% for i in range(1024) %}x{% endfor %}"
    assert len(render(seeded, source, "t", RenderLimits(max_output=1024))) == 1024
    with pytest.raises(ValidationError, match="over 1023 bytes"):
        render(seeded, source, "t", RenderLimits(max_output=1023))


def test_an_allocation_no_check_foresaw_is_out_of_memory_not_a_crash(
    seeded: CloudChain,
) -> None:
    # ~ concatenates without an operator hook: doubling a string 40 times asks for a terabyte.
    doubling = "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
    with pytest.raises(ValidationError, match=r"line 1: (out of memory|rendering took longer)"):
        render(seeded, doubling, "t", RenderLimits(max_seconds=20))


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    ],
)
def test_rendering_stops_at_its_deadline(seeded: CloudChain, source: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValidationError, match=r"line 1: rendering took longer than 0.5 s"):
        render(seeded, source, "t", RenderLimits(max_seconds=0.5))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("text", "size"), [("1024", 1024), ("16MiB", 16 << 20), ("512k", 512 << 10), ("1 GiB", 1 << 30)]
)
def test_sizes_are_bytes_or_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["0", "-1", "1.5M", "16MB", "lots", "", "\u0661\u0662", "99999999999999999999GiB", "2TiB"],
)
def test_a_bad_size_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="is not a size"):
        parse_size(text)


def test_the_cli_bounds_and_writes_nothing(
    seeded: CloudChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = tmp_path / "out.d"
    tmp_path.mkdir()
    template = tmp_path / "t.j2"
    template.write_text('{{ secret("billing", "db") }}\n' + NESTED)
    out = tmp_path / "out"
    assert main(["--render", str(template), "-o", str(out), "--max-output", "1MiB"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"cchain: error: template {template} line 2: the output would be over 1048576 bytes (--max-output)\n"
    )
    assert not out.exists() and sorted(tmp_path.iterdir()) == [template]
    template.write_text(
        '{{ secret("billing", "db") }}\n'
        "{% for i in range(2000) %}{% for j in range(100) %}0123456789{% endfor %}{% endfor %}"
    )
    assert main(["--render", str(template), "-o", str(out), "--max-output", "2MiB"]) == 0
    assert out.stat().st_size == 2_000_005
    template.write_text(
        '{{ secret("billing", "db") }}\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'
    )
    out.unlink()
    assert main(["--render", str(template), "-o", str(out), "--max-time", "0.5"]) == 2
    assert "line 2: rendering took longer than 0.5 s (--max-time)" in capsys.readouterr().err
    assert not out.exists()
    for flag, bad in (("--max-output", "12QB"), ("--max-time", "0"), ("--max-time", "nan")):
        assert main(["--render", str(template), flag, bad]) == 2
        assert f"argument {flag}: " in capsys.readouterr().err


def test_the_timer_and_memory_bound_are_put_back_after_rendering(seeded: CloudChain) -> None:
    import resource
    import signal

    before = (signal.getsignal(signal.SIGALRM), resource.getrlimit(resource.RLIMIT_AS))
    render(seeded, '{{ secret("billing", "db") }}', "t")
    with pytest.raises(ValidationError, match="recursion too deep"):
        render(seeded, "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "t")
    after = (signal.getsignal(signal.SIGALRM), resource.getrlimit(resource.RLIMIT_AS))
    assert after == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_in_another_thread_output_and_time_are_still_bounded(seeded: CloudChain) -> None:
    import threading

    errors: list[str] = []

    def run(source: str, limits: RenderLimits) -> None:
        try:
            render(seeded, source, "t", limits)
        except ValidationError as err:
            errors.append(str(err))

    loud = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"
    for limits in (
        RenderLimits(max_output=1000),
        RenderLimits(max_seconds=0.5, max_output=1 << 40),
    ):
        thread = threading.Thread(target=run, args=(loud, limits))
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
    assert errors == [
        "template t line 1: the output would be over 1000 bytes (--max-output)",
        "template t line 1: rendering took longer than 0.5 s (--max-time)",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "{{ secret('billing', secret('billing', 'db')) }}",
        "{{ secret(secret('billing', 'db') | upper, 'x') }}",
        "{{ secret('app', secret('billing', 'db')[0]) }}",
    ],
)
def test_a_name_computed_from_a_secret_is_never_said(seeded: CloudChain, source: str) -> None:
    with pytest.raises(SecretNotFoundError) as raised:
        render(seeded, source, "t")
    message = str(raised.value)
    assert message.startswith("template t line 1: a secret() or services() call with a computed")
    for leaked in ("p@ss", "P@SS", "app/p", "billing/p"):
        assert leaked not in message


def test_a_computed_name_is_said_while_no_secret_was_read(seeded: CloudChain) -> None:
    with pytest.raises(SecretNotFoundError, match="billing/nobody"):
        render(seeded, "{{ secret('billing', 'no' ~ 'body') }}", "t")


def test_an_unknown_filter_is_one_line_with_its_line(seeded: CloudChain) -> None:
    with pytest.raises(ValidationError, match=r"^template t line 2: .*No filter named 'nosuch'"):
        render(seeded, "ok\n{{ 'a' | nosuch }}", "t")


def test_a_lone_surrogate_in_the_output_is_refused_without_its_position(
    seeded: CloudChain,
) -> None:
    with pytest.raises(ValidationError, match="not text") as raised:
        render(seeded, "{{ secret('billing', 'db') }}{{ '%c' % 56575 }}", "t")
    assert "position" not in str(raised.value) and "4" not in str(raised.value)
