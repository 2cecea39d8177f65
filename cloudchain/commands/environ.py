"""The environment --exec and --resolve build: the inherited variables, each -e service's
secrets in the order given (a later service winning a name they share), and every cchain://
reference resolved, its value in the variable or, with ?dest, in a private file named there.

Everything is checked, and every secret read (services and references at once, in parallel),
before the first file is written or the command starts.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, cast

from ..errors import CloudChainError, SecretNotFoundError
from ..formats import check_prefix, describe, env_names, environment
from ..formats.env import environment_problem
from ..formats.names import check_loader_variables
from ..parallel import parallel_map
from ..refs import DEST_TEMPORARY, Reference, find_references, reader_for
from ..validation import shown
from .io import warn
from .outfile import check_output, write_private_file
from .secrets import tags_of
from .spec import Invocation

if TYPE_CHECKING:
    from ..results import Secret

# At most this many services and references are read at once.
MAX_PARALLEL_READS = 8


class Built(NamedTuple):
    """The command's whole environment, and the variables cchain set in it (for --resolve)."""

    env: dict[str, str]
    set_here: dict[str, str]


class DestFiles:
    """The files ?dest references were written to; remove() takes away exactly those (a file
    that was replaced since, or a FIFO written through, is left alone). Written again, a
    variable keeps its file."""

    def __init__(self) -> None:
        self._directory: str | None = None
        self._names: dict[str, str] = {}  # variable -> its file in the private directory
        self._written: dict[str, tuple[int, int]] = {}  # path -> (device, inode)

    @property
    def paths(self) -> list[str]:
        """The files written, to be removed."""
        return list(self._written)

    def write(self, variable: str, dest: str, value: Secret) -> str:
        """Write value for variable (0600) where dest says; return the file's path."""
        if dest == DEST_TEMPORARY:
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="cchain-")  # 0700, ours alone
            if variable not in self._names:
                self._names[variable] = os.path.join(self._directory, self._file_name(variable))
            path = self._names[variable]
        else:
            path = dest
        before = _identity(os.path.realpath(path))
        write_private_file(path, value)
        # A link (one the caller or root owns) was followed: the file is where it led.
        real = os.path.realpath(path)
        try:
            found = os.lstat(real)
        except OSError:  # /dev/stdout to a pipe and the like: written through, nothing to remove
            return path
        # A file written in place (/dev/stdout, /dev/fd/N: one the caller already had open,
        # `> app.log`) keeps its inode and is the caller's; a file written here is a new one.
        if stat.S_ISREG(found.st_mode) and (found.st_dev, found.st_ino) != before:
            self._written[real] = (found.st_dev, found.st_ino)
        return path

    def _file_name(self, variable: str) -> str:
        """The variable's name as a file name of its own in the directory: nothing in a name
        (a `/`, `..`) can lead out of it, and two names never share a file."""
        name = re.sub(r"[^A-Za-z0-9_-]", "_", variable)
        taken = {os.path.basename(path) for path in self._names.values()}
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def remove(self) -> None:
        """Remove every file written, and the private directory."""
        for path, identity in self._written.items():
            try:
                found = os.lstat(path)
                if (found.st_dev, found.st_ino) == identity:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        self._written.clear()
        self._names.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def _identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of what is at path now, or None."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def variable_names(inv: Invocation, service: str, secrets: Mapping[str, Secret]) -> dict[str, str]:
    """Map each user of service to its variable name, refusing loader variables not allowed."""
    args = inv.args
    base64 = [u for u, v in secrets.items() if isinstance(v, bytes)] if args.binary else []
    names = env_names(service, secrets, check_prefix(args.prefix), base64=base64)
    check_loader_variables(service, names, set(args.allow_env or ()))
    return names


def check_found(inv: Invocation, service: str, secrets: Mapping[str, Secret]) -> None:
    """Refuse a service with no secrets (a typo, most often) unless --allow-empty."""
    if not secrets and not inv.args.allow_empty:
        tagged = f" tagged {', '.join(inv.args.tag)}" if inv.args.tag else ""
        raise SecretNotFoundError(
            f"service {shown(service)} has no secrets{tagged}",
            hint="check the service's name; --allow-empty accepts a service with none",
        )


def read_services(inv: Invocation) -> list[dict[str, Secret]]:
    """Every -e service's secrets, read in parallel, in the order given; none may be empty."""
    tags = tags_of(inv.args.tag)
    exported = parallel_map(
        lambda service: inv.export(service, tags), inv.args.services, MAX_PARALLEL_READS
    )
    for service, secrets in zip(inv.args.services, exported, strict=True):
        check_found(inv, service, secrets)
    return exported


def clash(inv: Invocation, what: str, earlier: str, later: str) -> None:
    """Two services set what: warn that the later wins, or with --no-override refuse."""
    if inv.args.no_override:
        raise CloudChainError(
            f"{what} is set by both service {shown(earlier)} and service {shown(later)}",
            hint="rename one of them, or leave out --no-override to let the later one win",
        )
    warn(f"{what} from service {shown(later)} overrides the one from service {shown(earlier)}")


def _service_variables(
    inv: Invocation, service: str, secrets: Mapping[str, Secret]
) -> dict[str, str]:
    """One service's secrets as {variable: value}."""
    check_found(inv, service, secrets)
    names = variable_names(inv, service, secrets)
    additions, skipped = environment(
        secrets, names, binary_base64=bool(inv.args.binary), skip=inv.args.skip_unrepresentable
    )
    if skipped:
        warn(f"left out {len(skipped)} secrets of {shown(service)} that cannot go in the "
             f"environment: {describe(skipped)}")  # fmt: skip
    return additions


def _merge(
    inv: Invocation, exported: list[dict[str, Secret]]
) -> tuple[dict[str, str], dict[str, str]]:
    """The services' variables in the order given, and the service each came from: a later
    service wins, with a warning (or, with --no-override, an error) naming both services."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for service, secrets in zip(inv.args.services, exported, strict=True):
        for name, value in _service_variables(inv, service, secrets).items():
            if name in owner and owner[name] != service:
                clash(inv, name, owner[name], service)
            merged[name], owner[name] = value, service
    return merged, owner


def _inline_value(variable: str, reference: Reference, value: Secret) -> str:
    """The value a reference puts in its variable itself (no dest), or a one-line error."""
    if isinstance(value, bytes):
        problem: str | None = "is a binary secret"
    else:
        problem = environment_problem(variable, value)
        if problem is None:
            return value
    raise CloudChainError(
        f"{shown(variable)} references {shown(str(reference))}, which {problem}",
        hint="add ?dest=file to the reference to have it written to a file instead",
    )


def _check_destinations(references: Mapping[str, Reference]) -> None:
    """Refuse, before a secret is read, a ?dest path that cannot be written or is named twice."""
    targets: dict[str, str] = {}
    for variable, reference in references.items():
        dest = reference.dest
        if dest is None or dest == DEST_TEMPORARY:
            continue
        # One file however it is spelt (/run/k, /run//k, /run/./k, a link to it): the later
        # write would put one variable's secret in the other's file.
        same = os.path.realpath(dest)
        if same in targets:
            raise CloudChainError(
                f"{shown(variable)} and {shown(targets[same])} both write {shown(dest)}"
            )
        targets[same] = variable
        check_output(dest)


def build(inv: Invocation, base: Mapping[str, str], files: DestFiles) -> Built:
    """The environment for the command: base, the services' secrets, references resolved.
    Every check and read comes first; files are written last, into files."""
    args = inv.args
    check_prefix(args.prefix)
    tags = tags_of(args.tag)
    references = find_references(base, set(args.allow_env or ()))
    _check_destinations(references)

    def read(reference: Reference) -> Secret:
        if reference.stage in (None, "current"):
            return inv.read(reference.service, reference.user, reference.version)
        # A staged version is read from AWS, as --read --stage does: the agent serves the
        # current ones.
        return inv.chain.read(reference.service, reference.user, stage=reference.stage)

    calls: list[Callable[[], object]] = [
        *(functools.partial(inv.export, service, tags) for service in args.services),
        *(reader_for(variable, ref, read) for variable, ref in references.items()),
    ]
    results = parallel_map(lambda call: call(), calls, MAX_PARALLEL_READS)
    count = len(args.services)
    exported = cast("list[dict[str, Secret]]", results[:count])
    values = dict(zip(references, cast("list[Secret]", results[count:]), strict=True))
    from_services, owner = _merge(inv, exported)
    # A reference names one secret for one variable: it wins over a service's secret of the
    # same name (with a warning), as a service's secret wins over any other inherited value.
    inline = {
        variable: _inline_value(variable, reference, values[variable])
        for variable, reference in references.items()
        if reference.dest is None
    }
    for name in sorted(from_services):
        if name in references:
            warn(f"{name}: the cchain:// reference in the environment wins over the secret of "
                 f"service {shown(owner[name])}")  # fmt: skip
            del from_services[name]
        elif name in base:
            warn(f"{name} from service {shown(owner[name])} overrides an inherited variable")
    for variable, reference in references.items():
        if reference.dest is not None:
            inline[variable] = files.write(variable, reference.dest, values[variable])
    set_here = {**from_services, **inline}
    return Built({**base, **set_here}, dict(sorted(set_here.items())))
