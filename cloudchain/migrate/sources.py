"""SOURCE and --map, parsed before any AWS call."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ValidationError
from ..validation import check_new_row
from .credstash import DEFAULT_TABLE


class SourceSpec(NamedTuple):
    """Which store to import from: kind credstash (where: its table), ssm (where: the path
    prefix) or secretsmanager (where: a name prefix, or "")."""

    kind: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.where}" if self.where else self.kind


class NameRule(NamedTuple):
    """How a source name becomes (service, user): split at the first SEP, split at the last
    SEP, the last path segment as the user, or all into one service."""

    kind: str  # "split", "split-last", "path" or "service"
    value: str


def parse_source(text: str) -> SourceSpec:
    """Return the source named by --import-from."""
    kind, _, where = text.partition(":")
    if kind == "credstash":
        return SourceSpec(kind, where or DEFAULT_TABLE)
    if kind == "ssm":
        if not where.startswith("/") or "//" in where:
            raise ValidationError(
                f"--import-from {text!r}: an SSM source is a path prefix, as ssm:/PREFIX"
            )
        return SourceSpec(kind, where.rstrip("/") or "/")
    if kind == "secretsmanager":
        return SourceSpec(kind, where)
    raise ValidationError(
        f"--import-from {text!r}: the source is credstash[:TABLE], ssm:/PREFIX or "
        "secretsmanager[:PREFIX]"
    )


def parse_rule(source: SourceSpec, text: str | None) -> NameRule:
    """Return the name rule for a source: --map's, else the source's own."""
    if text is None:
        return {
            "credstash": NameRule("split", "."),
            "ssm": NameRule("path", "/"),
            "secretsmanager": NameRule("split-last", "/"),
        }[source.kind]
    if source.kind == "ssm":
        raise ValidationError(
            "--map goes with credstash and secretsmanager sources: an SSM path's last "
            "segment is the user and the rest the service, as chamber lays them out"
        )
    kind, colon, value = text.partition(":")
    if kind == "split" and colon and value:
        return NameRule("split", value)
    if kind == "service" and colon and value:
        try:  # checked now, not once per source name after the source has been read
            check_new_row(value, "user")
        except ValidationError as err:
            raise ValidationError(f"--map service:NAME: {err}") from None
        return NameRule("service", value)
    raise ValidationError(f"--map {text!r} must be split:SEP or service:NAME")


def parse_context(pairs: list[str] | None) -> dict[str, str]:
    """Return the encryption context of --source-context k=v flags."""
    context: dict[str, str] = {}
    for pair in pairs or ():
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValidationError(f"--source-context {pair!r} must be KEY=VALUE")
        if key in context:  # one key, two values: KMS would get only the last one
            raise ValidationError(f"--source-context gives {key!r} twice")
        context[key] = value
    return context
