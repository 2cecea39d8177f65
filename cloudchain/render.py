"""Templates with secrets in them (`cchain --render`), rendered in Jinja2's sandbox.

A template reads secrets through two functions:

    {{ secret("service", "user") }}        one secret (version=N for a retained version)
    {{ services("service") }}              a mapping of the service's users to their secrets

Before rendering, every call whose arguments are literals is found in the template and all of
them are fetched once, in parallel; a call with computed arguments is fetched when rendering
reaches it, once. The sandbox (ImmutableSandboxedEnvironment) refuses Python internals such as
`''.__class__.__mro__`, and StrictUndefined makes a misspelt name an error instead of an empty
string. Jinja2 comes in the cloudchain[template] extra.

An error message never quotes a secret: Jinja2's own message is withheld when it holds any
value the template read, and it is never chained into a traceback.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import CloudChainConfigError, CloudChainError, ValidationError
from .parallel import parallel_map

if TYPE_CHECKING:
    from .chain import CloudChain

INSTALL_HINT = "pip install 'cloudchain[template]'"


@dataclass(frozen=True)
class Wanted:
    """A secret (or a whole service, user None) that a template reads."""

    service: str
    user: str | None = None
    version: int | None = None

    def describe(self) -> str:
        """A tab-separated line for --dry-run."""
        if self.user is None:
            return f"service\t{self.service}"
        return f"secret\t{self.service}\t{self.user}" + (
            f"\tversion {self.version}" if self.version is not None else ""
        )


def _jinja() -> Any:
    try:
        import jinja2.sandbox
    except ImportError:
        raise CloudChainConfigError("templates need Jinja2", hint=INSTALL_HINT) from None
    return jinja2


def _environment() -> Any:
    jinja2 = _jinja()
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )


def _template_line(tb: TracebackType | None, name: str) -> int | None:
    """The template line an error came from (Jinja2 puts template frames in tracebacks)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _parse(source: str, name: str) -> tuple[Any, Any]:
    env = _environment()
    jinja2 = _jinja()
    try:
        return env, env.parse(source, name=name)
    except jinja2.TemplateSyntaxError as err:
        raise ValidationError(f"template {name} line {err.lineno}: {err.message}") from None


def wanted(source: str, name: str) -> tuple[list[Wanted], list[int]]:
    """Return what a template reads through literal calls, and the lines of computed calls."""
    _, ast = _parse(source, name)
    nodes = _jinja().nodes
    found: list[Wanted] = []
    computed: list[int] = []
    for call in ast.find_all(nodes.Call):
        function = getattr(call.node, "name", None)
        if function not in ("secret", "services"):
            continue
        args = [a.value for a in call.args if isinstance(a, nodes.Const)]
        kwargs = {k.key: k.value.value for k in call.kwargs if isinstance(k.value, nodes.Const)}
        literal = (
            len(args) == len(call.args)
            and len(kwargs) == len(call.kwargs)
            and all(isinstance(a, str) for a in args)
        )
        version = kwargs.get("version")
        if function == "secret" and literal and len(args) == 2 and set(kwargs) <= {"version"}:
            item = Wanted(str(args[0]), str(args[1]), version if isinstance(version, int) else None)
        elif function == "services" and literal and len(args) == 1 and not kwargs:
            item = Wanted(str(args[0]))
        else:  # computed, or not a call these functions accept: rendering will say
            computed.append(call.lineno)
            continue
        if item not in found:
            found.append(item)
    return found, computed


class _Secrets:
    """What the template's functions return, fetched at most once each."""

    def __init__(self, chain: CloudChain) -> None:
        self._chain = chain
        self._values: dict[Wanted, Any] = {}
        self._lock = threading.Lock()

    def fetch(self, item: Wanted) -> Any:
        with self._lock:
            if item in self._values:
                return self._values[item]
        if item.user is None:
            value: Any = self._chain.export(item.service)
        else:
            value = self._chain.read(item.service, item.user, version=item.version)
        for found in value.values() if isinstance(value, dict) else (value,):
            if isinstance(found, bytes):
                raise ValidationError(
                    f"a template reads {item.service}, which holds a binary secret; templates "
                    "hold text only"
                )
        with self._lock:
            self._values[item] = value
        return value

    def texts(self) -> list[str]:
        """Every value read so far, for keeping them out of error messages."""
        with self._lock:
            values = list(self._values.values())
        return [
            v for value in values for v in (value.values() if isinstance(value, dict) else [value])
        ]


def render(chain: CloudChain, source: str, name: str) -> str:
    """Render a template with the secrets it reads; raise before returning anything."""
    env, _ = _parse(source, name)
    literal, _ = wanted(source, name)
    fetched = _Secrets(chain)
    parallel_map(fetched.fetch, literal, chain.config.max_workers)
    env.globals.update(
        secret=lambda service, user, version=None: fetched.fetch(Wanted(service, user, version)),
        services=lambda service: dict(fetched.fetch(Wanted(service))),
    )
    jinja2 = _jinja()
    # Compiled with the template's name as its file name: Jinja2 then puts the template's own
    # lines into a traceback, which is how a runtime error finds its line.
    template = env.template_class.from_code(
        env, env.compile(source, name=name, filename=name), env.make_globals(None)
    )
    try:
        return str(template.render())
    except CloudChainError:
        raise  # a missing secret, a refused binary one: already named, already safe
    except jinja2.TemplateError as err:
        message, line = (
            getattr(err, "message", None) or type(err).__name__,
            _template_line(err.__traceback__, name) or getattr(err, "lineno", None),
        )
    except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError) as err:
        message, line = f"{type(err).__name__}: {err}", _template_line(err.__traceback__, name)
    if any(text and text in message for text in fetched.texts()):
        message = "the message was withheld: it quotes a secret"
    raise ValidationError(f"template {name} line {line or '?'}: {message}")
