"""Actions on the table and key: setup, re-encryption and IAM policy."""

from __future__ import annotations

import json
import sys
import threading

from ..validation import shown
from .io import info, write_stdout
from .spec import EXIT_ERROR, EXIT_OK, PROG, Action, Invocation, Option, Section


class ReencryptReport:
    """Each row's outcome as it is settled (any thread)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {"reencrypted": [], "current": [], "failed": []}
        self._lock = threading.Lock()

    def __call__(self, service: str, user: str, outcome: str) -> None:
        with self._lock:
            self.rows[outcome].append(f"{service}/{user}")

    @property
    def done(self) -> int:
        with self._lock:
            return sum(len(rows) for rows in self.rows.values())

    def as_json(self) -> str:
        with self._lock:
            return json.dumps({k: sorted(v) for k, v in self.rows.items()}, ensure_ascii=False)


def reencrypt(inv: Invocation) -> int:
    """Re-encrypt every secret under the key alias."""
    args = inv.args
    on_terminal = sys.stderr.isatty()
    report = ReencryptReport()

    def progress(done: int, total: int) -> None:
        if on_terminal:
            print(f"\r{PROG}: re-encrypting {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        result = inv.chain.reencrypt(args.service, progress=progress, on_row=report)
    except KeyboardInterrupt:
        if on_terminal:
            print(file=sys.stderr)
        if args.json:
            write_stdout(report.as_json() + "\n")
        info(
            f"re-encryption interrupted after {report.done} rows; run it again to finish: "
            "rows already done are skipped"
        )
        raise
    if on_terminal:
        print(file=sys.stderr)
    if args.json:
        write_stdout(report.as_json() + "\n")
    for row in result.failed:
        info(f"error: could not re-encrypt {shown(row)}; --read --debug on it shows why")
    failed = len(result.failed)
    info(f"re-encrypted {result.reencrypted}, already current {result.current}, failed {failed}")
    if not failed:
        if args.service is None:
            info(
                "every row is now bound to its row and version: allow_legacy = false "
                "(--no-legacy) is safe to set"
            )
        else:
            info(f"no legacy rows are left in service {args.service}")
    return EXIT_OK if not failed else EXIT_ERROR


def policy(inv: Invocation) -> int:
    """Print an IAM policy for one service."""
    args = inv.args
    document = inv.chain.policy(
        args.service, args.policy, account=args.account, key_arn=args.key_arn
    )
    write_stdout(json.dumps(document, indent=2) + "\n")
    return EXIT_OK


def setup(inv: Invocation) -> int:
    """Create the table and, optionally, the key."""
    args = inv.args
    chain = inv.chain
    result = chain.setup(create_key=args.create_key)
    name = chain.config.tablename
    # One line per region, the home region first and named as such.
    home = f"{result.region} (home): table '{name}' "
    home += "created" if result.table_created else "already exists"
    if result.streams_enabled:
        home += "; streams (NEW_AND_OLD_IMAGES) enabled for the global table"
    if args.create_key:
        alias = chain.config.keyalias
        home += f"; key {alias} {'created' if result.key_created else 'already exists'}"
    info(home)
    for region in result.replicas:
        table = "replica added" if region.table == "added" else "replica exists"
        line = f"{region.region}: table '{name}' {table}"
        if region.key:
            key = "replicated" if region.key == "replicated" else "exists"
            alias = "created" if region.alias == "created" else "exists"
            line += f"; key {key}, {chain.config.keyalias} {alias}"
        info(line)
    if not result.changed:
        info("nothing to change")
    return EXIT_OK


SECTION = Section(
    "table and key",
    actions=(
        Action(
            "setup", ("--setup",), "create the table if missing", setup, accepts=("create_key",)
        ),
        Action(
            "reencrypt",
            ("--reencrypt",),
            "re-encrypt every secret (or -e's), every retained version, under the key alias",
            reencrypt,
            accepts=("json",),
        ),
        Action(
            "policy",
            ("--policy",),
            "print an IAM policy that reads (or writes) only -e's secrets",
            policy,
            needs="service",
            accepts=("account", "key_arn"),
            kwargs={"choices": ("read", "write")},
        ),
    ),
    options=(
        Option(("--create-key",), "--setup: also create the KMS key behind the alias"),
        Option(("--account",), "--policy: the AWS account id (no STS call)", {"metavar": "ID"}),
        Option(("--key-arn",), "--policy: the KMS key ARN (no KMS call)", {"metavar": "ARN"}),
    ),
)
