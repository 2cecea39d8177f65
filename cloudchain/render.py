"""Templates with secrets in them (`cchain --render`), rendered in Jinja2's sandbox.

A template reads secrets through two functions:

    {{ secret("service", "user") }}        one secret (version=N for a retained version)
    {{ services("service") }}              a mapping of the service's users to their secrets

Before rendering, every call whose arguments are literals is found in the template and all of
them are fetched once, in parallel; a call with computed arguments is fetched when rendering
reaches it, once. The sandbox (ImmutableSandboxedEnvironment) refuses Python internals such as
`''.__class__.__mro__`, and StrictUndefined makes a misspelt name an error instead of an empty
string. Jinja2 comes in the cloudchain[template] extra.

An error message never quotes a secret: once the template has read one, Jinja2's message is
withheld (only the template line and the kind of error are said), Python's own messages (which
name internals) are never shown, and nothing is chained into a traceback. Rendering is bounded
in output, time and memory (render_limits.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CloudChainConfigError, CloudChainError, ValidationError
from .parallel import parallel_map
from .render_limits import Budget, LimitExceeded, RenderLimits, bounded_environment, process_bounds

if TYPE_CHECKING:
    from .config import Config
    from .results import Secret

INSTALL_HINT = "pip install 'cloudchain[template]'"


class SecretReader(Protocol):
    """What a template reads through: a CloudChain, or the agent's cache (agent/templates.py)."""

    @property
    def config(self) -> Config: ...

    def read(self, service: str, user: str, version: int | None = None) -> Secret: ...

    def export(self, service: str) -> dict[str, Secret]: ...


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


def _template_line(tb: TracebackType | None, name: str) -> int | None:
    """The template line an error came from (Jinja2 puts template frames in tracebacks)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _parse(source: str, name: str) -> Any:
    jinja2 = _jinja()
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    try:
        return env.parse(source, name=name)
    except jinja2.TemplateSyntaxError as err:
        raise ValidationError(f"template {name} line {err.lineno}: {err.message}") from None


def wanted(source: str, name: str) -> tuple[list[Wanted], list[int]]:
    """Return what a template reads through literal calls, and the lines of computed calls."""
    ast = _parse(source, name)
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

    def __init__(self, chain: SecretReader) -> None:
        self._chain = chain
        self._values: dict[Wanted, Any] = {}
        # False while the names written in the template are read; True once it runs, when a
        # name may have been computed, even from a secret.
        self.rendering = False
        self._lock = threading.Lock()

    def fetch(self, item: Wanted) -> Any:
        with self._lock:
            if item in self._values:
                return self._values[item]
        try:
            if item.user is None:
                value: Any = self._chain.export(item.service)
            else:
                value = self._chain.read(item.service, item.user, version=item.version)
        except CloudChainError as err:
            err.computed = self.rendering  # type: ignore[attr-defined]
            raise
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


def _functions(fetched: _Secrets) -> dict[str, Any]:
    """secret() and services(), checking their arguments themselves: a wrong call is named in
    the template's own terms, never as a Python function's internals."""

    def secret(*args: Any, **kwargs: Any) -> Any:
        version = kwargs.pop("version", args[2] if len(args) == 3 else None)
        if (
            len(args) not in (2, 3)
            or kwargs
            or not all(isinstance(a, str) for a in args[:2])
            or not (version is None or (isinstance(version, int) and not isinstance(version, bool)))
        ):
            raise _Misuse('secret() takes a service and a user, as text, and version=N: '
                          'secret("service", "user")')  # fmt: skip
        return fetched.fetch(Wanted(args[0], args[1], version))

    def services(*args: Any, **kwargs: Any) -> Any:
        if len(args) != 1 or kwargs or not isinstance(args[0], str):
            raise _Misuse('services() takes one service name, as text: services("service")')
        return dict(fetched.fetch(Wanted(args[0])))

    return {"secret": secret, "services": services}


class _Misuse(Exception):
    """secret() or services() called with arguments they do not take."""


# What each kind of runtime error means, said without its message.
_KINDS = {
    "UndefinedError": "an undefined name, attribute or key",
    "SecurityError": "an unsafe operation, refused by the sandbox",
    "TypeError": "an operation on the wrong type",
    "ValueError": "a bad value",
    "KeyError": "a missing key",
    "IndexError": "an index out of range",
    "ZeroDivisionError": "a division by zero",
    "OverflowError": "a number or range too large",
    "AttributeError": "a missing attribute",
}


def _withheld(err: CloudChainError, message: str) -> CloudChainError:
    """The same kind of error (so the same exit code), with a message that names nothing."""
    try:
        return type(err)(message)
    except TypeError:  # a subclass that takes more than a message
        return CloudChainError(message)


def _kind(err: BaseException) -> str:
    name = type(err).__name__
    return f"{name} ({_KINDS[name]})" if name in _KINDS else name


def render(chain: SecretReader, source: str, name: str, limits: RenderLimits | None = None) -> str:
    """Render a template with the secrets it reads, within limits (see render_limits); raise
    before returning anything."""
    _parse(source, name)
    budget = Budget(limits or RenderLimits())
    env = bounded_environment(budget)
    literal, _ = wanted(source, name)
    fetched = _Secrets(chain)
    parallel_map(fetched.fetch, literal, chain.config.max_workers)
    env.globals.update(_functions(fetched))
    fetched.rendering = True
    jinja2 = _jinja()
    # Compiled with the template's name as its file name: Jinja2 then puts the template's own
    # lines into a traceback, which is how a runtime error finds its line.
    try:
        code = env.compile(source, name=name, filename=name)
    except jinja2.TemplateError as err:  # an unknown filter: found when compiling, not parsing
        line = getattr(err, "lineno", None) or "?"
        raise ValidationError(f"template {name} line {line}: {_kind(err)}: "
                              f"{getattr(err, 'message', None) or err}") from None  # fmt: skip
    template = env.template_class.from_code(env, code, env.make_globals(None))
    chunks: list[str] = []
    try:
        generator = template.generate()
        with process_bounds(budget):
            while True:
                try:
                    try:
                        chunk = next(generator)
                    except StopIteration:
                        break
                    budget.add_output(chunk)
                    chunks.append(chunk)
                except LimitExceeded as err:
                    # Raised here, between chunks (the output bound, or the deadline's alarm
                    # landing in this loop): raise it where the template is, to find its line.
                    if _template_line(err.__traceback__, name) or generator.gi_frame is None:
                        raise
                    generator.throw(err)
        text = "".join(chunks)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # its position could tell a secret's length: not said
            raise ValidationError(f"template {name}: the output is not text (it holds a lone "
                                  "surrogate, which no file can carry)") from None  # fmt: skip
        return text
    except CloudChainError as err:
        if getattr(err, "computed", False) and fetched.texts():
            # A name the template computed may be a secret, or made from one: never said.
            line = _template_line(err.__traceback__, name) or "?"
            raise _withheld(err, f"template {name} line {line}: a secret() or services() call "
                            "with a computed name failed; the name was withheld: the template "
                            "read secrets") from None  # fmt: skip
        raise  # a missing secret, a refused binary one: named by the template itself, safe
    except (_Misuse, LimitExceeded) as err:
        message, line = str(err), _template_line(err.__traceback__, name)
    except RecursionError as err:
        message, line = "recursion too deep", _template_line(err.__traceback__, name)
    except MemoryError as err:
        message, line = "out of memory", _template_line(err.__traceback__, name)
    except jinja2.TemplateError as err:
        message, line = (
            getattr(err, "message", None) or _kind(err),
            _template_line(err.__traceback__, name) or getattr(err, "lineno", None),
        )
        if fetched.texts():  # it may quote a value read, or one transformed beyond recognition
            message = f"{_kind(err)}; the message was withheld: the template read secrets"
    except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError) as err:
        # Python's own messages name internals, and may quote a value: the kind only.
        message, line = _kind(err), _template_line(err.__traceback__, name)
    finally:
        chunks.clear()
    if any(text and text in message for text in fetched.texts()):
        message = "the message was withheld: it quotes a secret"
    raise ValidationError(f"template {name} line {line or '?'}: {message}")
