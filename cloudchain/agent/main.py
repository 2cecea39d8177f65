"""cchain-agent's command line: its flags, its start-up checks, and its run until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .._version import __version__
from ..commands.spec import CONFIG_FLAGS, CONFIGURATION
from ..errors import CloudChainError, ValidationError
from ..validation import shown
from .listen import Address, bind_tcp, bind_unix, parse_listen
from .logs import Escaped
from .server import AgentServer, serve

PROG = "cchain-agent"
log = logging.getLogger("cloudchain.agent")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for cchain-agent: its own flags and cchain's configuration."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve secrets to this machine from a cache: a unix socket by default, or "
        "loopback TCP with a token. It reads, and never writes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    own = parser.add_argument_group("agent")
    own.add_argument("--listen", metavar="ADDRESS", help="unix:PATH (default "
                     "$XDG_RUNTIME_DIR/cloudchain/agent.sock) or 127.0.0.1:PORT; any ADDR:PORT "
                     "with --tls-cert, --tls-key and --access")  # fmt: skip
    own.add_argument("--access", metavar="FILE", help="an access file (INI) naming clients "
                     "(token hash, uid, gid or certificate subject) and what each may read")  # fmt: skip
    own.add_argument("--new-token", metavar="NAME", help="print a new client token and the "
                     "access-file lines that admit it, then exit")  # fmt: skip
    own.add_argument("--tls-cert", metavar="FILE", help="serve TLS (1.2+) with this "
                     "certificate chain (PEM)")  # fmt: skip
    own.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    own.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates "
                     "signed by this CA (PEM)")  # fmt: skip
    own.add_argument("--token-file", metavar="FILE", help="TCP: the token, else "
                     "CLOUDCHAIN_AGENT_TOKEN, else a new one in a 0600 file")  # fmt: skip
    own.add_argument("--allow-loose-token-file", action="store_true", help="use a --token-file "
                     "that group or others may read, with a warning")  # fmt: skip
    own.add_argument("--ttl", type=float, default=300.0, metavar="S", help="seconds a value is "
                     "served from the cache (default 300)")  # fmt: skip
    own.add_argument("--stale-if-error", type=float, default=3600.0, metavar="S",
                     help="seconds past its TTL a value is still served while AWS fails "
                     "(default 3600)")  # fmt: skip
    own.add_argument("--max-entries", type=int, default=1000, metavar="N", help="entries held "
                     "for lookups, least recently used dropped first; prefetched services are "
                     "pinned outside this bound (default 1000)")  # fmt: skip
    own.add_argument("--max-connections", type=int, metavar="N", help="connections open at "
                     "once, the longest idle closed first past it (default 1024, or less to "
                     "stay below the open-file limit)")  # fmt: skip
    own.add_argument("--prefetch", action="append", default=[], metavar="SERVICE",
                     help="load SERVICE at start and keep it fresh (repeatable)")  # fmt: skip
    own.add_argument("--template", action="append", default=[], metavar="SRC:DEST",
                     help="render template SRC to DEST and keep it rendered (repeatable; "
                     "more settings in a [template NAME] config section)")  # fmt: skip
    own.add_argument("--once", action="store_true", help="render every template once, then "
                     "exit: 0 when all rendered, 1 otherwise; nothing is served")  # fmt: skip
    own.add_argument("--debug", action="store_true", help="debug log (never a secret)")
    group = parser.add_argument_group(CONFIGURATION.title)
    for option in CONFIGURATION.options:
        group.add_argument(*option.flags, help=option.help, **option.kwargs)
    return parser


def _check(args: argparse.Namespace) -> None:
    for name, value in (("--ttl", args.ttl), ("--stale-if-error", args.stale_if_error)):
        if not value >= 0:
            raise ValidationError(f"{name} must be 0 or more seconds")
    if args.max_entries < 1:
        raise ValidationError("--max-entries must be at least 1")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValidationError("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise ValidationError("--tls-client-ca needs --tls-cert and --tls-key")
    if args.access is not None and args.token_file is not None:
        raise ValidationError("--access and --token-file do not go together: with --access, "
                              "each client's token is in the access file (as a hash)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGTERM or SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.new_token is not None:
        return _new_token(args.new_token)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Escaped(f"{PROG}: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    logging.getLogger("cloudchain").setLevel(logging.DEBUG if args.debug else logging.INFO)
    try:
        import prometheus_client  # noqa: F401 - only to fail early without the extra
    except ImportError:
        print(f"{PROG}: error: the agent needs cloudchain[agent]: "
              "pip install 'cloudchain[agent]'", file=sys.stderr)  # fmt: skip
        return 1
    try:
        return _run(args)
    except CloudChainError as err:
        print(f"{PROG}: error: {shown(str(err))}", file=sys.stderr)
        if err.hint:
            print(f"{PROG}: hint: {shown(err.hint)}", file=sys.stderr)
        return 2 if isinstance(err, ValidationError) else 1
    except OSError as err:
        print(f"{PROG}: error: {shown(str(err.strerror or err))}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..chain import CloudChain
    from .access import load_access
    from .cached import CachedSecrets
    from .connections import connection_cap
    from .routes import Agent
    from .template_config import load_templates
    from .templates import Templates, render_once
    from .token import load_token

    _check(args)
    specs = load_templates(args.template, args.config, os.environ)  # before any AWS call
    cap = connection_cap(args.max_connections)
    access = load_access(Path(args.access)) if args.access is not None else None
    wide = args.tls_cert is not None and access is not None
    address = parse_listen(args.listen, os.environ, wide)
    if address.path is not None and args.tls_cert is not None:
        raise ValidationError("--tls-cert is for a TCP --listen, not a unix socket")
    tls = names = None
    if args.tls_cert is not None:
        from .tls import certificate_names, server_context

        tls = server_context(args.tls_cert, args.tls_key, args.tls_client_ca)
        names = certificate_names(args.tls_cert)
    overrides = {field: getattr(args, flag) for flag, field in CONFIG_FLAGS.items()}
    chain = CloudChain.from_config(args.config, **{**overrides, "cache_ttl": 0})
    if args.once:
        return render_once(specs, chain)
    prefetch = list(dict.fromkeys([*args.prefetch, *(s for t in specs for s in t.services)]))
    cached = CachedSecrets(chain, ttl=args.ttl, stale_if_error=args.stale_if_error,
                           max_entries=args.max_entries, prefetch=prefetch)  # fmt: skip
    shared = access is not None and access.local
    sock = bind_unix(address.path, shared) if address.path else bind_tcp(address)
    bound = os.lstat(address.path) if address.path else None
    token = token_file = made = None
    templates = None
    try:
        if address.path is None:
            port = int(sock.getsockname()[1])
            address = Address(host=address.host, port=port, tls=tls is not None)
        if address.path is None and access is None:
            token, token_file, new = load_token(args.token_file, os.environ, address.port,
                                                args.allow_loose_token_file)  # fmt: skip
            made = os.lstat(token_file) if new and token_file else None
        cached.start()  # prefetch before answering: a prefetched read never waits
        hosts: frozenset[str] = frozenset()
        if names is not None:
            from .tls import host_names

            hosts = host_names(names, address.host, address.port)
        agent = Agent(cached, token)
        templates = Templates(specs, cached)
        agent.registry.register(templates)
        templates.start()
        server = AgentServer(agent, chain.config.max_workers, address, cap,
                             access, tls, hosts)  # fmt: skip

        def ready() -> None:
            print(f"export CLOUDCHAIN_AGENT={address}", flush=True)
            if token_file is not None:
                print(f"export CLOUDCHAIN_AGENT_TOKEN_FILE={token_file}", flush=True)
            log.warning("serving table '%s' on %s%s", chain.config.tablename, address,
                        f"; token in {token_file}" if token_file else "")  # fmt: skip

        asyncio.run(_until_signal(server, sock, address, ready))
    finally:
        if templates is not None:
            templates.stop()
        cached.stop()
        sock.close()
        if address.path is not None and bound is not None:
            _remove_own(address.path, bound)
        if token_file is not None and made is not None:
            _remove_own(token_file, made)
    log.warning("stopped")
    return 0


def _new_token(name: str) -> int:
    """--new-token: the token on the first line (once: it is kept nowhere), then the lines."""
    from .access import new_token

    # "#" and ";" start comments in the access file: they would cut its [client NAME] line.
    if not name.strip() or any(c in "]#;" or not c.isprintable() for c in name):
        print(f"{PROG}: error: --new-token needs a printable client name without ], # or ;",
              file=sys.stderr)  # fmt: skip
        return 2
    token, lines = new_token(name.strip())
    print(token)
    print("# add to the access file (then fill in services):")
    print(lines, end="", flush=True)
    return 0


def _remove_own(path: Path, made: os.stat_result) -> None:
    """Remove the socket or token file this agent made, and nothing that took its place."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
        path.unlink(missing_ok=True)


async def _until_signal(
    server: AgentServer, sock: socket.socket, address: Address, ready: Callable[[], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(server, sock, address, ready, stop)
