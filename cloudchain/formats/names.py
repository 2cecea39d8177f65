"""Environment-variable names: the name each user exports as, the variables that must not be
set from a secret, and the user each name in an imported dotenv or env file stands for."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

from ..errors import CloudChainError, ValidationError

_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# --binary base64 exports a binary secret's base64 text under its name and this suffix, so that
# the reader knows to decode it and can never take it for the secret itself.
BASE64_SUFFIX = "_B64"

# Variables that change how programs are found, loaded or run. A secret that would set one
# could run code in every process that loads the service's secrets, so it is refused unless
# the caller names the variable with --allow-env.
LOADER_VARIABLES = frozenset(
    {
        "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "PROMPT_COMMAND",
        "CDPATH", "ZDOTDIR", "PERL5LIB", "PERLLIB", "PERL5OPT", "PERL5DB", "RUBYOPT", "RUBYLIB",
        "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS",
        "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
        "LOCALDOMAIN",
    }
)  # fmt: skip
LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BASH_FUNC_")


def env_name(user: str, prefix: str = "") -> str:
    """Map a username to an environment variable name: DB-password -> DB_PASSWORD, 9x -> _9X."""
    name = re.sub(r"[^A-Z0-9_]", "_", user.upper())
    if name[:1].isdigit():
        name = "_" + name
    return prefix + name


def check_prefix(prefix: str) -> str:
    """Return prefix after checking it can start an environment variable name."""
    if prefix and not _NAME_OK.match(prefix):
        raise ValidationError(f"--prefix {prefix!r} cannot start an environment variable name")
    return prefix


def _users(users: list[str]) -> str:
    quoted = [repr(u) for u in users]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def env_names(
    service: str, users: Iterable[str], prefix: str = "", *, base64: Collection[str] = ()
) -> dict[str, str]:
    """Map each user to its variable name (users in base64 get BASE64_SUFFIX); users that
    share a name are an error naming every such group at once."""
    owners: dict[str, list[str]] = {}
    for user in sorted(users):
        name = env_name(user, prefix) + (BASE64_SUFFIX if user in base64 else "")
        owners.setdefault(name, []).append(user)
    shared = [f"users {_users(us)} of service {service} all map to the variable {name}"
              if len(us) > 2 else
              f"users {_users(us)} of service {service} both map to the variable {name}"
              for name, us in owners.items() if len(us) > 1]  # fmt: skip
    if shared:
        raise CloudChainError("; ".join(shared) + "; rename all but one of each")
    return {users_[0]: name for name, users_ in owners.items()}


def check_loader_variables(
    service: str, names: Mapping[str, str], allowed: frozenset[str] | set[str] = frozenset()
) -> None:
    """Refuse any secret (user -> variable name) that would set a loader variable not allowed."""
    for user in sorted(names, key=lambda u: names[u]):
        name = names[user]
        loader = name in LOADER_VARIABLES or name.startswith(LOADER_PREFIXES)
        if loader and name not in allowed:
            raise ValidationError(
                f"secret {user!r} of service {service} would set {name}, which changes how "
                f"programs are found, loaded or run; refused (--allow-env {name} allows it)"
            )


def users_for_variables(
    service: str, variables: Iterable[str], existing: Iterable[str], prefix: str = ""
) -> dict[str, str]:
    """Map each variable of an imported dotenv or env file to the user it stands for.

    That is the existing user of the service whose variable name it is (as --export with this
    prefix names it: ALICE is alice's) or who is named as it is, less the prefix; with no such
    user, a new user named as it is, less the prefix. Everything that cannot be mapped is
    refused at once, naming each: a variable two users share, two variables on one user, and
    a variable without the prefix.
    """
    existing = sorted(existing)
    by_name: dict[str, set[str]] = {}
    for user in existing:
        by_name.setdefault(env_name(user, prefix), set()).add(user)
        by_name.setdefault(prefix + user, set()).add(user)
    problems: list[str] = []
    unprefixed = [v for v in variables if not v.startswith(prefix)]
    if unprefixed:
        problems.append(
            f"{', '.join(repr(v) for v in unprefixed)} not starting with the prefix {prefix!r}"
        )
    mapping: dict[str, str] = {}
    for variable in variables:
        if not variable.startswith(prefix):
            continue
        candidates = sorted(by_name.get(variable, ()))
        if len(candidates) > 1:
            problems.append(f"{variable!r} could be users {_users(candidates)}")
        else:
            mapping[variable] = candidates[0] if candidates else variable[len(prefix) :]
    targets: dict[str, list[str]] = {}
    for variable, user in mapping.items():
        targets.setdefault(user, []).append(variable)
    problems += [
        f"{_users(vs)} both name user {user!r}" for user, vs in targets.items() if len(vs) > 1
    ]
    if problems:
        raise ValidationError(
            f"cannot tell which users of service {service} the import file names: "
            + "; ".join(problems)
            + "; rename them in the file, or import JSON, whose keys are user names as written"
        )
    return mapping
