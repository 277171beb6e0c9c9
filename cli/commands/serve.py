"""`ebpftop serve`: the read-only dashboard in browsers, through textual-serve.

Each browser session is its own process, `python -m ebpftop.cli.main --kiosk --connect
AGENT`: a viewer of the node agent's stream, so a wall of browsers costs the node one
collection. The command is fixed here, at start, from this process's own arguments;
nothing a browser sends can change it (see `KioskSite`). Bound to 127.0.0.1 by default;
a non-local address refuses to start without a token.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import shutil
import sys
from dataclasses import dataclass

from ebpftop.cli.options import AGENT_SOCKET

DEFAULT_LISTEN = "127.0.0.1:8088"
MIN_TOKEN = 16  # characters: a guessable token is no lock
MAX_SESSIONS = 16  # browser sessions at once: each is a Python process of its own


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def local(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a name: it may resolve to anything

    def url_host(self) -> str:
        """The host part of the URL a person opens (a wildcard address is no place to go)."""
        if self.host in ("0.0.0.0", "::", ""):
            import socket

            return socket.gethostname()
        return f"[{self.host}]" if ":" in self.host else self.host


def listen_address(text: str) -> Listen:
    """An argparse type: HOST:PORT ([v6]:PORT for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {port!r} in {text!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} in {text!r} is out of range (0-65535)")
    return Listen(host, number)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="publish the read-only dashboard to browsers (a viewer of the node agent each)",
        description="Serve the dashboard to web browsers with textual-serve. Every browser session "
        "is a read-only viewer of the agent (`ebpftop agent`): no key, URL or message from a "
        "browser can run an action. Listens on 127.0.0.1 unless told otherwise; a non-local "
        "address needs --token-file.",
    )
    p.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--agent",
        metavar="ADDR",
        help=f"the agent to view: a unix socket or HOST:PORT (default {AGENT_SOCKET})",
    )
    source.add_argument("--replay", metavar="FILE", help="show this recording instead of an agent")
    p.add_argument(
        "--paused", action="store_true", help="with --replay: each session starts paused at the first sample"
    )
    p.add_argument(
        "--token-file",
        dest="serve_token_file",
        metavar="FILE",
        help=f"browsers must bring the token in this file (at least {MIN_TOKEN} characters): "
        "open http://HOST:PORT/?token=TOKEN once; required for a non-local --listen",
    )
    p.add_argument(
        "--agent-token-file",
        metavar="FILE",
        help="token for an agent that listens on TCP (`agent --token-file`)",
    )
    p.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, with --tls-key)"
    )
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=MAX_SESSIONS,
        metavar="N",
        help=f"browser sessions at once; more are turned away (default {MAX_SESSIONS})",
    )
    p.set_defaults(func=run)


class ServeError(Exception):
    """The server cannot start as asked; str() says why and what to do."""


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(f"--token-file {path}: cannot read it ({exc})") from None
    if len(token) < MIN_TOKEN or any(c.isspace() or not c.isprintable() for c in token):
        raise ServeError(
            f"--token-file {path}: the token must be one word of at least {MIN_TOKEN} printable "
            "characters (e.g. `openssl rand -hex 24 > FILE`)"
        )
    return token


def session_command(args: argparse.Namespace) -> str:
    """The one command every browser session runs, as the shell line textual-serve starts.

    Built only from this process's arguments; a browser's request adds nothing to it.
    """
    argv = [sys.executable, "-m", "ebpftop.cli.main", "--kiosk"]
    for flag, value in (("--config", args.config), ("--theme", args.theme), ("--audit-log", args.audit_log)):
        if value:
            argv += [flag, os.path.abspath(value) if flag != "--theme" else value]
    if args.replay:
        argv += ["replay", os.path.abspath(args.replay)] + (["--paused"] if args.paused else [])
    else:
        argv += ["--connect", args.agent or AGENT_SOCKET]
        if args.agent_token_file:
            argv += ["--token-file", os.path.abspath(args.agent_token_file)]
    # A session must end with this server, also when it is killed: its app does not notice
    # the closed pipes and would replay or view for ever. setpriv (util-linux) asks the
    # kernel for SIGKILL when the parent dies; `exec` makes this server that parent (the
    # shell textual-serve starts would otherwise stay between). A session holds nothing
    # to clean up: it is a read-only viewer.
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    return "exec " + shlex.join(prefix + argv)


def check(args: argparse.Namespace) -> str | None:
    """Refuse what must not start; return the browser token (None: no token asked)."""
    listen: Listen = args.listen
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ServeError("--tls-cert and --tls-key go together")
    token = read_token(args.serve_token_file) if args.serve_token_file else None
    if not listen.local and token is None:
        # TLS alone hides the stream from the network but lets anyone who reaches the
        # port watch the node's flows and processes: a non-local address needs the token.
        raise ServeError(
            f"--listen {listen.host}:{listen.port} is reachable from other machines: give "
            "--token-file FILE (and --tls-cert/--tls-key so the token does not travel in clear), "
            f"or listen on 127.0.0.1"
        )
    if args.max_sessions < 1:
        raise ServeError(f"--max-sessions must be 1 or more, got {args.max_sessions}")
    if args.paused and not args.replay:
        raise ServeError("--paused goes with --replay (an agent's stream is live)")
    if args.replay and not os.path.isfile(args.replay):
        raise ServeError(f"--replay {args.replay}: no such file")
    return token


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_UNUSED, load_or_exit
    from ebpftop.core.untrusted import clean

    load_or_exit(args, lab=LAB_UNUSED)  # a bad configuration stops here, as in every session
    try:
        token = check(args)
    except ServeError as exc:
        print(f"ebpftop serve: {clean(str(exc))}", file=sys.stderr)
        return 2
    from ebpftop.cli.serve_site import KioskSite, SiteError, tls_context

    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except SiteError as exc:
        print(f"ebpftop serve: {clean(str(exc))}", file=sys.stderr)
        return 2
    site = KioskSite(
        command=session_command(args),
        token=token,
        tls=tls,
        max_sessions=args.max_sessions,
        loopback_only=args.listen.local and token is None,
    )
    source = f"recording {args.replay}" if args.replay else f"agent {args.agent or AGENT_SOCKET}"
    if not args.replay and not args.agent and not os.path.exists(AGENT_SOCKET):
        print(
            f"ebpftop serve: no agent at {AGENT_SOCKET} yet (start it: `ebpftop agent`); "
            "sessions will say so and reconnect",
            file=sys.stderr,
        )
    try:
        site.run(args.listen.host, args.listen.port, args.listen.url_host(), clean(source))
    except SiteError as exc:
        print(f"ebpftop serve: {clean(str(exc))}", file=sys.stderr)
        return 1
    return 0
