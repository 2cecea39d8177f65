"""cchain:// references: an environment variable whose value names a secret instead of holding
it, `cchain://SERVICE/USER` with optional `?version=N`, `?stage=pending` and `?dest=file` or
`?dest=/path`, so an ECS task, a Kubernetes pod or a Lambda function can carry references and
have `cchain --exec` put the values in place.

Every reference is checked before any secret is read: a malformed one, or one in a variable
that changes how programs are found, loaded or run, is refused naming the variable. Nothing
here prints, reads argv or writes files; the command layer does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar
from urllib.parse import unquote

from .errors import CloudChainError, SecretNotFoundError, ValidationError
from .formats.names import LOADER_PREFIXES, LOADER_VARIABLES
from .validation import MAX_SERVICE_BYTES, MAX_USER_BYTES, check_name, shown

SCHEME = "cchain://"
STAGES = ("current", "pending", "previous")
# ?dest=file: a file in a private temporary directory, named after the variable.
DEST_TEMPORARY = "file"
T = TypeVar("T")
FORM = "cchain://SERVICE/USER[?version=N|stage=pending|dest=file|dest=/path]"


class Reference(NamedTuple):
    """One parsed reference: the secret it names, which version of it, and where it goes
    (dest None: into the variable itself; "file": a private temporary file; else that path)."""

    service: str
    user: str
    version: int | None = None
    stage: str | None = None
    dest: str | None = None

    def __str__(self) -> str:
        where = f"{self.service}/{self.user}"
        if self.version is not None:
            return f"{where} version {self.version}"
        return f"{where} ({self.stage})" if self.stage else where


def is_reference(value: str) -> bool:
    """Whether an environment variable's value is a cchain:// reference."""
    return value.startswith(SCHEME)


def _malformed(variable: str, problem: str) -> ValidationError:
    return ValidationError(
        f"{shown(variable)} holds a malformed cchain:// reference: {problem}",
        hint=f"write it as {FORM}",
    )


def _options(variable: str, query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if not equals or not value:
            raise _malformed(variable, f"option {shown(key)!r} has no value")
        if key not in ("version", "stage", "dest"):
            raise _malformed(variable, f"unknown option {shown(key)!r} (version, stage or dest)")
        if key in options:
            raise _malformed(variable, f"option {key} is given twice")
        options[key] = unquote(value, errors="strict")
    if "version" in options and "stage" in options:
        raise _malformed(variable, "give version or stage, not both")
    return options


def parse_reference(variable: str, value: str) -> Reference:
    """Parse the reference in variable's value, refusing a malformed one naming the variable."""
    if not is_reference(value):
        raise _malformed(variable, f"it does not start with {SCHEME}")
    path, _, query = value[len(SCHEME) :].partition("?")
    service, slash, user = path.partition("/")
    try:
        service, user = unquote(service, errors="strict"), unquote(user, errors="strict")
        options = _options(variable, query) if query else {}
    except UnicodeDecodeError:
        raise _malformed(variable, "a %-escape is not UTF-8") from None
    if not slash or not service or not user:
        raise _malformed(variable, "it names no SERVICE/USER")
    try:
        check_name(service, "service", MAX_SERVICE_BYTES)
        check_name(user, "user", MAX_USER_BYTES)
    except ValidationError as err:
        raise _malformed(variable, str(err)) from None
    version = options.get("version")
    if version is not None and not (version.isascii() and version.isdigit() and int(version)):
        raise _malformed(variable, "version must be a positive whole number")
    stage = options.get("stage")
    if stage is not None and stage not in STAGES:
        raise _malformed(variable, f"stage must be {', '.join(STAGES[:-1])} or {STAGES[-1]}")
    dest = options.get("dest")
    if dest is not None and dest != DEST_TEMPORARY and not dest.startswith("/"):
        raise _malformed(variable, "dest must be file or an absolute path")
    if dest is not None and "\x00" in dest:  # %00: no path holds one (open() would raise)
        raise _malformed(variable, "dest holds a NUL character")
    return Reference(service, user, int(version) if version else None, stage, dest)


def is_loader_variable(name: str) -> bool:
    """Whether setting name changes how programs are found, loaded or run (LD_PRELOAD...)."""
    return name in LOADER_VARIABLES or name.startswith(LOADER_PREFIXES)


def find_references(
    environ: Mapping[str, str], allowed: frozenset[str] | set[str] = frozenset()
) -> dict[str, Reference]:
    """Every reference in environ, by variable name and in name order, all checked first: a
    malformed one, or one in a loader variable not allowed, is refused naming the variable."""
    found: dict[str, Reference] = {}
    for name in sorted(v for v in environ if is_reference(environ[v])):
        if is_loader_variable(name) and name not in allowed:
            raise ValidationError(
                f"{shown(name)} holds a cchain:// reference, but {shown(name)} changes how "
                f"programs are found, loaded or run; refused (--allow-env {shown(name)} allows it)"
            )
        found[name] = parse_reference(name, environ[name])
    return found


def naming_variable(variable: str, err: CloudChainError) -> CloudChainError:
    """The same error with the variable that referenced the secret named first, so that a
    missing secret says which variable of the task or pod definition to fix."""
    message = f"{shown(variable)} references {err}"
    if isinstance(err, SecretNotFoundError):
        return SecretNotFoundError(message, hint=err.hint)
    try:
        return type(err)(message, hint=err.hint)
    except TypeError:  # an error with more to say than a message keeps its own
        return err


def reader_for(
    variable: str, reference: Reference, read: Callable[[Reference], T]
) -> Callable[[], T]:
    """A call reading one reference, whose errors name the variable."""

    def call() -> T:
        try:
            return read(reference)
        except CloudChainError as err:
            raise naming_variable(variable, err) from None

    return call
