"""What each cchain action does: one library call, then the output. Input and output only."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from .chain import CloudChain
from .cli import CONFIG_FLAGS, EXIT_ERROR, EXIT_OK, FROM_STDIN_OR_PROMPT, PROG
from .envfile import check_prefix, env_names, parse_import, render, text_for_environment
from .errors import ValidationError

# --exec --pristine keeps only these inherited variables.
PRISTINE_KEEP = ("PATH", "HOME", "USER", "LANG", "TERM", "TZ")
EXIT_CANNOT_EXECUTE = 126
EXIT_COMMAND_NOT_FOUND = 127


def info(message: str) -> None:
    """Print a confirmation or warning for the user to stderr."""
    print(f"{PROG}: {message}", file=sys.stderr)


def write_stdout(data: str | bytes) -> None:
    """Write text as UTF-8, or bytes as they are, to stdout, whatever the locale's encoding."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data.encode("utf-8") if isinstance(data, str) else data)
    sys.stdout.buffer.flush()


def _strip_one_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def _stdin_bytes(what: str) -> bytes:
    if sys.stdin is None:
        raise ValidationError(f"no standard input to read {what} from")
    return sys.stdin.buffer.read()


def _utf8_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{what} on standard input is not UTF-8 text") from None


def _stdin_text(what: str) -> str:
    return _utf8_text(_stdin_bytes(what), what)


def read_secret(value: object, binary: bool = False) -> str | bytes:
    """Return the secret to save from the flag value, stdin or a no-echo prompt.

    With binary, stdin's bytes are the secret exactly: nothing is stripped or decoded.
    """
    if binary:
        return _stdin_bytes("the secret")
    if isinstance(value, str) and value != "-":
        info(
            "warning: a secret given on the command line is visible to other users "
            "(ps, shell history); prefer --save - or the prompt"
        )
        return value
    if value is FROM_STDIN_OR_PROMPT and sys.stdin is not None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Secret: ")
        if getpass.getpass("Repeat secret: ") != first:
            raise ValidationError("the two secrets entered do not match; nothing was saved")
        return first
    return _utf8_text(_strip_one_newline(_stdin_bytes("the secret")), "the secret")


def write_private_file(path: str, text: str) -> None:
    """Write text to path atomically, readable by its owner only (mode 0600)."""
    import tempfile

    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _save(chain: CloudChain, args: argparse.Namespace) -> int:
    # args.save already holds the secret: run() reads it before any client is built.
    version = chain.save(args.service, args.user, args.save, expect_version=args.expect_version)
    info(f"saved {args.service}/{args.user} version {version} in table '{chain.config.tablename}'")
    return EXIT_OK


def _read(chain: CloudChain, args: argparse.Namespace) -> int:
    value = chain.read(args.service, args.user, version=args.secret_version)
    if isinstance(value, bytes):
        write_stdout(value)  # a binary secret comes out exactly, with nothing added
    else:
        write_stdout(value if args.no_newline else value + "\n")
    return EXIT_OK


def _delete(chain: CloudChain, args: argparse.Namespace) -> int:
    chain.delete(args.service, args.user)
    info(
        f"deleted {args.service}/{args.user} and all its versions from table '{chain.config.tablename}'"
    )
    return EXIT_OK


def _history(chain: CloudChain, args: argparse.Namespace) -> int:
    versions = chain.history(args.service, args.user)
    if args.json:
        write_stdout(
            json.dumps([{"version": v.version, "saved_at": v.saved_at} for v in versions]) + "\n"
        )
    else:
        write_stdout("".join(f"{v.version}\t{v.saved_at or '-'}\n" for v in versions))
    return EXIT_OK


def _rollback(chain: CloudChain, args: argparse.Namespace) -> int:
    version = chain.rollback(args.service, args.user, args.rollback)
    info(f"rolled {args.service}/{args.user} back to the value of version {args.rollback}")
    write_stdout(f"{version}\n")
    return EXIT_OK


def _list(chain: CloudChain, args: argparse.Namespace) -> int:
    entries = list(chain.list(args.service))
    if args.json:
        rows = [{"service": e.service, "user": e.user, "legacy": e.legacy} for e in entries]
        write_stdout(json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        mark = {True: "\tlegacy", False: ""}
        write_stdout("".join(f"{e.service}\t{e.user}{mark[e.legacy]}\n" for e in entries))
    return EXIT_OK


def _setup(chain: CloudChain, args: argparse.Namespace) -> int:
    result = chain.setup(create_key=args.create_key)
    name = chain.config.tablename
    info(f"table '{name}' {'created' if result.table_created else 'already exists'}")
    if args.create_key:
        alias = chain.config.keyalias
        info(f"key {alias} {'created' if result.key_created else 'already exists'}")
    return EXIT_OK


def _export(chain: CloudChain, args: argparse.Namespace) -> int:
    fmt = args.format or "json"
    prefix = check_prefix(args.prefix)
    secrets = chain.export(args.service)
    names = {} if fmt == "json" else env_names(args.service, list(secrets), prefix)
    text = render(fmt, secrets, names)  # fully rendered before any output: no partial export
    if args.output:
        write_private_file(args.output, text)
        info(f"exported {len(secrets)} secrets of {args.service} to {args.output}")
    else:
        write_stdout(text)
    return EXIT_OK


def _exec(chain: CloudChain, args: argparse.Namespace) -> int:
    prefix = check_prefix(args.prefix)
    secrets = chain.export(args.service)
    names = env_names(args.service, list(secrets), prefix)
    if args.pristine:
        env = {key: os.environ[key] for key in PRISTINE_KEEP if key in os.environ}
    else:
        env = dict(os.environ)
    additions = {name: text_for_environment(name, secrets[user]) for user, name in names.items()}
    for name in sorted(additions):
        if name in env:
            info(f"warning: {name} from service {args.service} overrides an inherited variable")
    env.update(additions)
    command = args.command
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        info(f"error: command not found: {command[0]}")
        return EXIT_COMMAND_NOT_FOUND
    except OSError as err:
        info(f"error: cannot run {command[0]}: {err.strerror}")
        return EXIT_CANNOT_EXECUTE
    return EXIT_OK  # not reached: execvpe replaced this process


def _import(chain: CloudChain, args: argparse.Namespace) -> int:
    if args.import_file == "-":
        text = _stdin_text("the import file")
    else:
        try:
            # Bytes, then decode: text mode would turn a "\r\n" inside a quoted value into "\n".
            text = Path(args.import_file).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValidationError(f"cannot read {args.import_file}: {err}") from None
    mapping = parse_import(text, args.format)
    result = chain.import_secrets(args.service, mapping, dry_run=args.dry_run)
    counts = f"{result.created} created, {result.changed} changed, {result.unchanged} unchanged"
    if args.dry_run:
        planned = [(a, u) for u, a in result.actions.items() if a != "unchanged"]
        write_stdout("".join(f"{action}\t{user}\n" for action, user in planned))
        info(f"dry run, nothing written: would be {counts}")
    else:
        info(f"imported into {args.service}: {counts}")
    return EXIT_OK


def _reencrypt(chain: CloudChain, args: argparse.Namespace) -> int:
    on_terminal = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if on_terminal:
            print(f"\r{PROG}: re-encrypting {done}/{total}", end="", file=sys.stderr, flush=True)

    result = chain.reencrypt(args.service, progress=progress)
    if on_terminal:
        print(file=sys.stderr)
    for row in result.failed:
        info(f"error: could not re-encrypt {row}; --read --debug on it shows why")
    failed = len(result.failed)
    info(f"re-encrypted {result.reencrypted}, already current {result.current}, failed {failed}")
    return EXIT_OK if not failed else EXIT_ERROR


def _policy(chain: CloudChain, args: argparse.Namespace) -> int:
    document = chain.policy(args.service, args.policy, account=args.account, key_arn=args.key_arn)
    write_stdout(json.dumps(document, indent=2) + "\n")
    return EXIT_OK


COMMANDS: dict[str, Callable[[CloudChain, argparse.Namespace], int]] = {
    "save": _save,
    "read": _read,
    "list": _list,
    "delete": _delete,
    "history": _history,
    "rollback": _rollback,
    "export": _export,
    "exec": _exec,
    "import": _import,
    "reencrypt": _reencrypt,
    "policy": _policy,
    "setup": _setup,
}


def run(action: str, args: argparse.Namespace) -> int:
    """Run one action with the parsed arguments and return the exit code."""
    # Read the secret before building anything, so bad input never reaches AWS.
    if action == "save":
        args.save = read_secret(args.save, args.binary)
    overrides = {field: getattr(args, flag) for flag, field in CONFIG_FLAGS.items()}
    chain = CloudChain.from_config(args.config, **overrides)
    return COMMANDS[action](chain, args)
