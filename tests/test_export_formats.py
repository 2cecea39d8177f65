"""--export --format yaml, tfvars, properties, k8s and github, each read back by a reader that
is not our writer: PyYAML's safe loader (yaml, k8s), python-hcl2 (tfvars), jproperties
(properties) and a line-by-line port of the Actions runner's own reader (github); what each
refuses, naming the variable; and the checks made before any secret is read."""

from __future__ import annotations

import base64
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path

import hcl2
import jproperties
import pytest
import yaml
from github_env import read_github_env, read_masks
from helpers import KEY_ALIAS
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudchain import CloudChain, CloudChainError
from cloudchain.cli import main
from cloudchain.commands.spec import Invocation
from cloudchain.formats import env_names, render_export

# A service holding every kind of value the formats must carry or refuse.
VALUES: dict[str, str | bytes] = {
    "db-password": "p@ss w0rd",
    "pem": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
    "tricky": "${HOME} %{if} \"q\" \\ 's' é 😀 yes: # ! = :",
    "yes": "no",
    "cert": b"\x00\x01\xff binary",
}
TEXT = {user: value for user, value in VALUES.items() if isinstance(value, str)}


def read_tfvars(text: str) -> dict[str, str]:
    """Read a tfvars file with python-hcl2, strings as values (escapes resolved)."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)
    data: dict[str, str] = hcl2.loads(text, serialization_options=options)
    return data


def read_properties(text: str) -> dict[str, str]:
    """Read a properties file with jproperties, as java.util.Properties would (ISO-8859-1)."""
    props = jproperties.Properties()
    props.load(text.encode("iso-8859-1"), "iso-8859-1")
    return {key: props[key].data for key in props}


def export(fmt: str, secrets: Mapping[str, str | bytes], **options: object) -> str:
    names = env_names("svc", secrets) if fmt == "github" else {}
    return render_export(fmt, secrets, names, service="svc", **options).text  # type: ignore[arg-type]


# -- each format read back by a real reader, on any value -----------------------------------------

USERS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
FEW = settings(max_examples=30, deadline=None)


@FEW
@given(st.dictionaries(USERS, TEXTS | st.binary(max_size=20), max_size=5))
def test_yaml_reads_back_exactly_with_the_safe_loader(secrets: dict[str, str | bytes]) -> None:
    assert (yaml.safe_load(export("yaml", secrets)) or {}) == secrets


def test_yaml_writes_multi_line_values_as_block_scalars_and_quotes_what_other_readers_resolve() -> (
    None
):
    text = export("yaml", {**TEXT, "octal": "0o17", "float": "1e5", "on": "off"})
    assert "pem: |\n  -----BEGIN KEY-----\n  abc\n  -----END KEY-----\n" in text
    for line in ('"on": "off"', 'octal: "0o17"', 'float: "1e5"', '"yes": "no"'):
        assert line in text  # a YAML 1.2 reader would take them for numbers or booleans
    assert yaml.safe_load(export("yaml", VALUES))["cert"] == VALUES["cert"]  # !!binary
    long = "word " * 100
    assert export("yaml", {"long": long}) == f'long: "{long}"\n'  # never folded over lines


@FEW
@given(st.dictionaries(USERS, TEXTS, max_size=5))
def test_properties_read_back_exactly_with_jproperties(secrets: dict[str, str]) -> None:
    text = export("properties", secrets)
    assert text.isascii()  # java.util.Properties reads ISO-8859-1: the rest as \uXXXX
    assert read_properties(text) == secrets


TF_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True).filter(
    lambda n: n not in ("source", "version", "providers", "count", "for_each", "lifecycle",
                        "depends_on", "locals")
)  # fmt: skip


@FEW
@given(st.dictionaries(TF_NAMES, TEXTS.map(lambda v: unicodedata.normalize("NFC", v)), max_size=5))
def test_tfvars_read_back_exactly_with_python_hcl2(secrets: dict[str, str]) -> None:
    assert read_tfvars(export("tfvars", secrets)) == secrets


K8S_KEYS = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(
    lambda k: not k.startswith("..") and k != "."
)


@FEW
@given(st.dictionaries(K8S_KEYS, TEXTS | st.binary(max_size=20), max_size=5))
def test_k8s_is_a_secret_whose_data_decodes_to_the_values(secrets: dict[str, str | bytes]) -> None:
    manifest = yaml.safe_load(export("k8s", secrets, k8s_namespace="prod"))
    assert (manifest["apiVersion"], manifest["kind"], manifest["type"]) == (
        "v1",
        "Secret",
        "Opaque",
    )
    assert manifest["metadata"] == {"name": "svc", "namespace": "prod"}
    data = manifest.get("data") or {}
    assert all(isinstance(v, str) for v in data.values())  # the schema: base64 strings
    decoded = {key: base64.b64decode(value, validate=True) for key, value in data.items()}
    assert decoded == {k: v if isinstance(v, bytes) else v.encode() for k, v in secrets.items()}


GITHUB_TEXTS = TEXTS.filter(lambda v: "\0" not in v and not v.endswith("\r"))


@FEW
@given(st.dictionaries(USERS, GITHUB_TEXTS, max_size=5))
def test_github_reads_back_exactly_as_the_runner_reads_it(secrets: dict[str, str]) -> None:
    try:
        names = env_names("svc", secrets)
    except CloudChainError:  # two users on one variable: refused, as for dotenv
        return
    text = render_export("github", secrets, names).text
    assert read_github_env(text) == {names[user]: value for user, value in secrets.items()}


def test_github_delimiters_are_random_per_value_and_never_inside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = export("github", {"a": "x", "b": "x"})
    delimiters = re.findall(r"<<(.*)\n", text)
    assert len(set(delimiters)) == 2
    assert all(re.fullmatch(r"ghadelimiter_[0-9a-f]{32}", d) for d in delimiters)
    # A delimiter that the value holds is drawn again.
    draws = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr("secrets.token_hex", lambda n: next(draws))
    text = export("github", {"a": f"x ghadelimiter_{'0' * 32} y"})
    assert text.startswith(f"A<<ghadelimiter_{'1' * 32}\n")
    monkeypatch.undo()
    # A value that spells an entry of its own sets nothing else.
    forged = "x\nghadelimiter_0\nPATH<<EOF\n/evil\nEOF"
    assert read_github_env(export("github", {"a": forged})) == {"A": forged}


def test_github_mask_lines_mask_every_line_of_every_value() -> None:
    secrets = {"pem": TEXT["pem"], "pct": "100%\r\nok", "blank": "a\n \nb"}
    exported = render_export(
        "github", secrets, env_names("svc", secrets), service="svc", github_mask=True
    )
    masks = read_masks(exported.preamble)
    assert masks == ["a", "b", "100%", "ok", "-----BEGIN KEY-----", "abc", "-----END KEY-----"]
    assert all(line.startswith("::add-mask::") for line in exported.preamble.splitlines())


# -- what each format refuses, naming the variable -------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "secrets", "named"),
    [
        ("properties", {"cert": b"\x00"}, ["cert (user 'cert') is a binary secret"]),
        ("tfvars", {"cert": b"\x00"}, ["cert (user 'cert') is a binary secret"]),
        (
            "tfvars",
            {"db.password": "s3cr3t"},
            ["db.password (user 'db.password') is not a Terraform"],
        ),
        ("tfvars", {"count": "s3cr3t"}, ["count (user 'count') is a name Terraform reserves"]),
        ("tfvars", {"cafe": "cafe\u0301"}, ["cafe (user 'cafe') is not in Unicode NFC"]),
        ("k8s", {"a b": "s3cr3t-1", "..x": "s3cr3t-2"}, ["a b (user 'a b')", "..x (user '..x')"]),
        ("github", {"nul": "a\0b"}, ["NUL (user 'nul') holds a NUL"]),
        ("github", {"dos": "a\r"}, ["DOS (user 'dos') ends in a carriage return"]),
        ("github", {"cert": b"\x00"}, ["CERT (user 'cert') is a binary secret"]),
        ("github", {"big": "x" * 131_072}, ["BIG (user 'big') is 131077 bytes"]),
    ],
)
def test_each_format_refuses_what_it_cannot_carry_naming_every_variable(
    fmt: str, secrets: dict[str, str | bytes], named: list[str]
) -> None:
    with pytest.raises(CloudChainError) as refused:
        export(fmt, {**secrets, "fine": "ok"})
    message = str(refused.value)
    assert all(part in message for part in named), message
    assert "--skip-unrepresentable" in (refused.value.hint or "")
    for value in secrets.values():
        assert str(value) not in message or isinstance(value, bytes)
    kept = render_export(
        fmt, {**secrets, "fine": "ok"}, env_names("svc", [*secrets, "fine"]) if fmt == "github" else {},
        service="svc", skip=True,
    )  # fmt: skip
    assert len(kept.skipped) == len(named)
    assert "ok" in kept.text or "b2s=" in kept.text


def test_binary_base64_carries_binary_secrets_in_the_text_formats() -> None:
    for fmt, read in (("properties", read_properties), ("tfvars", read_tfvars)):
        back = read(export(fmt, {"cert": b"\x00\xff", "a": "x"}, binary_base64=True))
        assert back == {"a": "x", "cert_B64": "AP8="}
    with pytest.raises(
        CloudChainError, match=r"users 'cert' and 'cert_B64' .* both map to the key"
    ):
        export("properties", {"cert": b"\x00", "cert_B64": "x"}, binary_base64=True)


def test_a_value_the_writer_would_not_read_back_is_refused_or_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cloudchain.formats import keyed

    real = keyed.render_yaml

    def lossy(entries: Mapping[str, str | bytes]) -> tuple[str, list[str]]:
        text, _ = real(entries)
        return text, [key for key in entries if key == "odd"]  # as if "odd" read back changed

    monkeypatch.setattr(keyed, "render_yaml", lossy)
    with pytest.raises(CloudChainError, match=r"odd \(user 'odd'\) is a value the writer would"):
        export("yaml", {"odd": "s3cr3t", "fine": "ok"})
    kept = render_export("yaml", {"odd": "s3cr3t", "fine": "ok"}, {}, skip=True)
    assert (yaml.safe_load(kept.text), [r.user for r in kept.skipped]) == ({"fine": "ok"}, ["odd"])


def test_k8s_refuses_a_service_over_the_api_servers_limit() -> None:
    with pytest.raises(CloudChainError, match="over the API server's limit of 1048576"):
        export("k8s", {f"u{n}": "x" * 300_000 for n in range(4)})


# -- through cchain: before anything is read, and the files it writes ------------------------------


@pytest.fixture
def cli(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudChain]:
    monkeypatch.setenv("CLOUDCHAIN_KEY_ALIAS", KEY_ALIAS)
    for user, value in VALUES.items():
        chain.save("svc", user, value)
    yield chain


def test_every_format_through_cchain_reads_back(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    readers = {
        "yaml": yaml.safe_load,
        "properties": read_properties,
        "tfvars": read_tfvars,
        "github": read_github_env,
    }
    expected = {
        "yaml": VALUES,
        "properties": {**TEXT, "cert_B64": base64.b64encode(VALUES["cert"]).decode()},  # type: ignore[arg-type]
        "tfvars": {**TEXT, "cert_B64": base64.b64encode(VALUES["cert"]).decode()},  # type: ignore[arg-type]
        "github": {
            "DB_PASSWORD": TEXT["db-password"], "PEM": TEXT["pem"], "TRICKY": TEXT["tricky"],
            "YES": "no", "CERT_B64": base64.b64encode(VALUES["cert"]).decode(),  # type: ignore[arg-type]
        },
    }  # fmt: skip
    for fmt, read in readers.items():
        assert main(["-e", "svc", "--export", "--format", fmt, "--binary", "base64"]) == 0, fmt
        out, err = capsys.readouterr()
        assert (read(out), err) == (expected[fmt], ""), fmt
    assert main(["-e", "svc", "--export", "--format", "k8s", "--k8s-name", "app-secrets"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["metadata"] == {"name": "app-secrets"}
    assert base64.b64decode(manifest["data"]["cert"]) == VALUES["cert"]


def test_github_mask_goes_to_stdout_and_the_entries_to_the_file(
    cli: CloudChain, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env_file = tmp_path / "set_env"
    env_file.write_text("EARLIER=1\n")  # -o replaces the file, as docs/operations.md warns
    argv = ["-e", "svc", "--export", "--format", "github", "--github-mask", "--binary", "base64"]
    assert main([*argv, "-o", str(env_file)]) == 0
    out, err = capsys.readouterr()
    entries = read_github_env(env_file.read_text())
    assert set(entries) == {"DB_PASSWORD", "PEM", "TRICKY", "YES", "CERT_B64"}
    masks = read_masks(out)
    assert len(masks) == len(out.splitlines())  # nothing but mask lines on stdout
    for value in entries.values():  # every line of every value is masked
        assert all(line in masks for line in value.split("\n") if line.strip())
    assert err == f"cchain: exported 5 secrets of svc to {env_file}\n"
    cli.save("loader", "path", "/tmp/evil")  # a variable that changes how programs run
    assert main(["-e", "loader", "--export", "--format", "github"]) == 2
    assert "would set PATH" in capsys.readouterr().err
    assert main(["-e", "loader", "--export", "--format", "github", "--allow-env", "PATH"]) == 0
    assert read_github_env(capsys.readouterr().out) == {"PATH": "/tmp/evil"}


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--format", "yaml", "--k8s-name", "x"], "--k8s-name goes with --format k8s"),
        (["--format", "json", "--k8s-namespace", "x"], "--k8s-namespace goes with --format k8s"),
        (["--format", "env", "--github-mask"], "--github-mask goes with --format github"),
        (["--format", "github", "--github-mask"], "--github-mask prints ::add-mask:: lines on"),
        (["--format", "k8s", "--k8s-name", "Bad_Name"], "--k8s-name 'Bad_Name' is not a Kub"),
        (
            ["--format", "k8s", "--k8s-name", "ok", "--k8s-namespace", "a.b"],
            "--k8s-namespace 'a.b' is not a Kub",
        ),
        (
            ["--format", "k8s"],
            "--format k8s: the service name 'My_Svc' is not a Kubernetes object name",
        ),
        (["--import", "x.yaml", "--format", "yaml"], "cannot import the yaml format"),
    ],
)
def test_format_options_are_checked_before_anything_is_read(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    error: str,
) -> None:
    def no_read(*args: object) -> None:
        raise AssertionError("a secret was read before the options were checked")

    monkeypatch.setattr(Invocation, "export", no_read)
    (tmp_path / "x.yaml").write_text("a: b\n")
    action = [] if "--import" in argv else ["--export"]
    assert main(["-e", "My_Svc", *action, *argv]) == 2
    [line] = capsys.readouterr().err.splitlines()[:1]
    assert line.startswith(f"cchain: error: {error}"), line


def test_a_missing_writer_library_is_one_line_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_read(*args: object) -> None:
        raise AssertionError("a secret was read before the library was looked for")

    monkeypatch.setattr(Invocation, "export", no_read)
    for fmt, module, package in (("yaml", "yaml", "PyYAML"), ("k8s", "yaml", "PyYAML"),
                                 ("properties", "javaproperties", "javaproperties")):  # fmt: skip
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
        assert main(["-e", "svc", "--export", "--format", fmt]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [
            f"cchain: error: --format {fmt} needs {package}, which is not installed",
            "cchain: hint: pip install 'cloudchain[formats]'",
        ]
