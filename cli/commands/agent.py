"""`ebpftop agent`: the collectors without a UI, one per node, serving their snapshots as
a read-only stream to any number of viewers (`ebpftop`, `ebpftop --connect ADDR`,
`ebpftop serve`). docs/ARCHITECTURE.md ("Agent and viewers").

Logs go to stderr as `ebpftop-agent[PID]: LEVEL: message` (journald keeps them).
SIGHUP re-reads the configuration: a valid new one restarts the collectors with it (BPF
detached, then attached again; the viewers stay connected and keep the history), a bad
one is logged and changes nothing. SIGTERM (and SIGINT) stop the collectors, which
detach everything they attached, close the listeners and remove the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import ipaddress
import logging
import math
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpftop.core.model import Snapshot
    from ebpftop.core.runtime import Runtime
    from ebpftop.core.settings import Settings
    from ebpftop.core.stream_server import StreamServer

log = logging.getLogger("ebpftop.agent")

MAX_HISTORY_S = 3600.0
# Seconds of samples the agent's store keeps for /metrics; the UI's 300 held ~50 MB more
# (Python objects, 0.27 MB a second of samples at 1 Hz) that no scrape needs.
STORE_SECONDS = 120.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ebpftop.cli.options import AGENT_SOCKET, seconds

    p = subparsers.add_parser(
        "agent",
        help="collect once for many viewers: the collectors without a UI, serving a live stream",
        description="Run the collectors without a UI and serve their snapshots, read-only, to "
        "viewers (`ebpftop` uses a local agent by itself; `ebpftop --connect ADDR`). "
        "SIGHUP reloads the configuration, SIGTERM stops with nothing left attached.",
        epilog="Exit status: 2 on bad options or configuration, 1 when another agent already "
        "serves the socket or a listener cannot open.",
    )
    p.add_argument(
        "--socket",
        default=AGENT_SOCKET,
        metavar="PATH",
        help=f"unix socket to serve on (default {AGENT_SOCKET}; mode 0660, group of its directory)",
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="also serve on TCP (off by default); beyond loopback only with --token-file",
    )
    p.add_argument(
        "--token-file",
        dest="agent_token_file",
        metavar="FILE",
        help="TCP viewers must send this token (first line of FILE, 16 characters or more); "
        "the unix socket asks for none",
    )
    p.add_argument(
        "--history",
        dest="stream_history",
        type=seconds(MAX_HISTORY_S, zero=False),
        default=300.0,
        metavar="SECONDS",
        help="seconds of history a viewer gets at once when it connects (default 300)",
    )
    p.add_argument(
        "--queue",
        dest="stream_queue",
        type=int,
        default=None,
        metavar="FRAMES",
        help="frames a viewer may fall behind before its oldest are dropped and counted (default 600)",
    )
    p.add_argument(
        "--no-deflate",
        dest="stream_plain",
        action="store_true",
        help="send every viewer plain NDJSON, also one that accepts deflate (which is ~10x smaller "
        "on the wire, for ~2 ms of CPU a second per viewer)",
    )
    p.add_argument(
        "--bpf-stats",
        action="store_true",
        help="keep the kernel's BPF run-time stats on while the agent runs (a global switch that "
        "adds a little to every BPF program's run, off again when the agent stops; needs "
        "CAP_SYS_ADMIN), so /metrics carries the run time per packet of its programs",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        default=None,
        help="also serve Prometheus /metrics and /debug/pprof/profile (read-only) there, e.g. 127.0.0.1:9433",
    )
    p.set_defaults(func=run)


def _listen_address(text: str) -> tuple[str, int]:
    from ebpftop.core.stream_client import parse_address

    kind, host, port = parse_address(text)
    if kind != "tcp":
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to may not stay loopback


def setup_logging() -> None:
    # A copy of fd 2: a collector that points fd 2 elsewhere for a while (the flows
    # collector catches clang's output while it compiles) must not swallow the log.
    stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("ebpftop-agent[%(process)d]: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_RUNNING, load_or_exit, read_token
    from ebpftop.core.stream_client import agent_answers
    from ebpftop.core.untrusted import clean

    settings = load_or_exit(args, lab=LAB_RUNNING)
    listen: tuple[str, int] | None = None
    if args.listen:
        try:
            listen = _listen_address(args.listen)
        except ValueError as exc:
            print(f"ebpftop: --listen: {clean(exc)}", file=sys.stderr)
            return 2
    token = read_token(args.agent_token_file, "--token-file") if args.agent_token_file else None
    if listen is not None and not _loopback(listen[0]) and token is None:
        print(
            f"ebpftop: --listen {clean(args.listen)} is beyond loopback: give --token-file "
            "(anyone who reaches the port would see every flow and process on this node)",
            file=sys.stderr,
        )
        return 2
    running = agent_answers(args.socket)
    if running is not None:
        print(
            f"ebpftop: an agent already serves {clean(args.socket)} (pid {running.get('agent_pid')}); "
            "one per node is enough",
            file=sys.stderr,
        )
        return 1
    if args.stream_queue is not None and not 1 <= args.stream_queue <= 100_000:
        print(f"ebpftop: --queue must be 1 to 100000 frames, got {args.stream_queue}", file=sys.stderr)
        return 2
    setup_logging()
    try:
        return asyncio.run(_serve(args, settings, listen, token))
    except KeyboardInterrupt:
        return 0


async def _serve(
    args: argparse.Namespace, settings: Settings, listen: tuple[str, int] | None, token: str | None
) -> int:
    from ebpftop.core.stream_server import QUEUE_MAX, StreamServer

    server = StreamServer(
        history_s=args.stream_history,
        token=token,
        queue_max=args.stream_queue or QUEUE_MAX,
        compress=not args.stream_plain,
    )
    try:
        await server.listen_unix(args.socket)
        log.info("serving %s (mode 0660, group of its directory)", args.socket)
        if listen is not None:
            port = await server.listen_tcp(*listen)
            log.warning(
                "also serving TCP %s:%d (%s)",
                listen[0],
                port,
                "a token is required" if token is not None else "loopback only, no token",
            )
    except OSError as exc:
        log.error("cannot listen: %s", exc.strerror or exc)
        await server.close()
        return 1
    agent = _Agent(args, settings, server)
    metrics = None
    if args.metrics:
        from ebpftop.cli.metrics import start_metrics_server

        try:
            metrics = start_metrics_server(lambda: agent.runtime, args.metrics, say=log.warning)
        except (ValueError, OSError) as exc:
            log.error("cannot serve metrics on %s: %s", args.metrics, exc)
            await server.close()
            return 2 if isinstance(exc, ValueError) else 1
        log.info("metrics on %s/metrics", metrics.url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, agent.reload_soon)
    try:
        await agent.start()
        await agent.stopping.wait()
        log.info("stopping: detaching the collectors")
    finally:
        if metrics is not None:
            metrics.close()
        await agent.stop()
        await server.close()
    log.info("stopped; nothing left attached")
    return 0


class _Agent:
    """The collectors (one Runtime at a time; a reload swaps it) feeding one server."""

    def __init__(self, args: argparse.Namespace, settings: Settings, server: StreamServer) -> None:
        self.args = args
        self.settings = settings
        self.server = server
        self.runtime: Runtime | None = None
        self.stopping = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None

    def _build(self, settings: Settings) -> Runtime:
        from ebpftop.collectors.registry import default_collectors
        from ebpftop.core.runtime import Runtime, audited_gate

        # The agent acts on nothing: its gate is read-only, and it wires no session end.
        # Its store serves /metrics alone (each viewer keeps its own history, from the
        # stream's): STORE_SECONDS of samples cover a scrape interval up to that long.
        kept = max(1, math.ceil(STORE_SECONDS / settings.refresh))
        quiet = dataclasses.replace(settings, kiosk=True, history=min(settings.history, kept))
        runtime = Runtime(quiet, default_collectors(quiet), gate=audited_gate(quiet))
        runtime.bus.subscribe(self.server.publish)
        runtime.bus.subscribe(HealthLog())
        return runtime

    async def start(self) -> None:
        from ebpftop.collectors.selfcost.collector import find as find_selfcost

        self.runtime = self._build(self.settings)
        selfcost = find_selfcost(self.runtime)
        if self.args.bpf_stats and selfcost is not None and not selfcost.stats_on():
            # The selfcost source holds the switch and lets go when the runtime stops.
            log.warning("--bpf-stats: %s", selfcost.switch.error)
        await self.runtime.start()
        names = ", ".join(c.name for c in self.runtime.collectors)
        log.info("collecting: %s (every %g s)", names, self.settings.refresh)

    async def stop(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloading
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.stop()

    def reload_soon(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.warning("SIGHUP: a reload is already under way")
            return
        self._reloading = asyncio.create_task(self._reload())

    async def _reload(self) -> None:
        from ebpftop.cli.options import LAB_RUNNING, load_or_exit

        log.info("SIGHUP: reading the configuration again")
        # Each problem goes through the log: fd 2 itself may point elsewhere for a while
        # (the flows collector catches clang's output there while it compiles).
        problems = io.StringIO()
        try:
            with contextlib.redirect_stderr(problems):
                new = load_or_exit(self.args, lab=LAB_RUNNING)
        except SystemExit:
            for line in problems.getvalue().splitlines():
                log.error("SIGHUP: %s", line)
            log.error("SIGHUP: the configuration has problems (above); keeping the running one")
            return
        changed = sorted(
            f.name for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(self.settings, f.name)
        )
        if not changed:
            log.info("SIGHUP: the configuration is unchanged")
            return
        log.info("SIGHUP: changed %s; restarting the collectors", ", ".join(changed))
        old, self.runtime = self.runtime, None
        if old is not None:
            await old.stop()
        self.settings = new
        await self.start()


class HealthLog:
    """Says in the log when a source's health changes (down, degraded, off, ok again), with
    its reason: a node agent has no screen, and its journal is where an operator looks
    first (the image smoke test found flows down with nothing logged)."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}

    def __call__(self, snap: Snapshot) -> None:
        from ebpftop.core.untrusted import clean

        state = snap.health.state.value
        if self._state.get(snap.source) == state:
            return
        was = self._state.get(snap.source)
        self._state[snap.source] = state
        if was is None and state == "ok":
            return  # a source that starts well is the normal case, said once at start
        hint = f" ({clean(snap.health.hint, 200)})" if snap.health.hint else ""
        why = clean(snap.health.message, 300) + hint
        level = logging.INFO if state in ("ok", "off") else logging.WARNING
        log.log(level, "source %s %s%s", snap.source, state, f": {why}" if why.strip() else "")
