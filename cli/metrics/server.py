"""One HTTP listener on its own thread: `/metrics` for Prometheus and
`/debug/pprof/profile` for Pyroscope, Parca or `go tool pprof`. Read-only: nothing it
serves changes anything, so a non-loopback address is allowed, and said at start.

The profile endpoint answers at once with the latest BPF window (the profiles source
samples all the time): `?seconds=S` picks the shortest window of at least S seconds,
else the longest (S defaults to 10, the shortest window). Parca and Pyroscope ask for
the seconds they scrape every, so consecutive scrapes overlap little.
"""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import logging
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector

from ebpftop.collectors.profiles.model import Profile, ProfilesData
from ebpftop.collectors.profiles.pprof_write import pprof_bytes
from ebpftop.core.untrusted import clean

from .exporter import Exporter, RuntimeSource, current

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9433"
INDEX = b"ebpftop agent: /metrics (Prometheus), /debug/pprof/profile?seconds=10 (CPU, pprof)\n"


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--metrics {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics {text!r}: the port must be 0..65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def pick_window(data: ProfilesData, seconds: float) -> Profile | None:
    windows = sorted(data.windows, key=lambda w: w.end - w.start)
    if not windows:
        return None
    return next((w for w in windows if w.end - w.start >= seconds - 0.5), windows[-1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    runtime: RuntimeSource


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stalls mid-request lets its thread go
    server_version = "ebpftop"

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not news

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper hung up
        except Exception as exc:
            log.exception("metrics: %s failed", clean(self.path, 100))
            with contextlib.suppress(OSError):  # headers may be out already
                self._send(500, f"internal error: {clean(exc, 200)}\n".encode(), "text/plain; charset=utf-8")

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/metrics":
            self._metrics()
        elif url.path == "/debug/pprof/profile":
            self._profile(urllib.parse.parse_qs(url.query))
        elif url.path in ("/", "/debug/pprof", "/debug/pprof/"):
            self._send(200, INDEX, "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: " + INDEX, "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _metrics(self) -> None:
        encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
        extra = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body, extra = gzip.compress(body, compresslevel=1), {"Content-Encoding": "gzip"}
        self._send(200, body, ctype, extra)

    def _profile(self, query: dict[str, list[str]]) -> None:
        text = query.get("seconds", ["10"])[-1]
        try:
            seconds = float(text)
            if not 0 < seconds <= 3600:
                raise ValueError
        except ValueError:
            self._send(400, f"seconds={clean(text, 40)}: must be 0 < S <= 3600\n".encode(), "text/plain")
            return
        rt = current(self.server.runtime)
        if rt is None:
            self._send(503, b"no CPU profile now: the agent is starting its collectors again\n", "text/plain")
            return
        store = rt.store
        snap = store.last_good("profiles")
        data = snap.data if snap is not None and isinstance(snap.data, ProfilesData) else None
        window = pick_window(data, seconds) if data is not None else None
        if data is None or window is None or not data.hz:
            health = store.health("profiles")
            why = f"no CPU profile yet: the profiles source is {health.state.value}"
            if health.message:
                why += f": {clean(health.message, 200)}"
            self._send(503, (why + "\n").encode(), "text/plain; charset=utf-8")
            return
        body = pprof_bytes(window, data.hz)
        self._send(
            200, body, "application/octet-stream", {"Content-Disposition": 'attachment; filename="profile"'}
        )


class MetricsServer:
    """The running listener; calling it (or `close`) stops it."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    __call__ = close


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start_metrics_server(
    runtime: RuntimeSource, listen: str = DEFAULT_LISTEN, *, say: Callable[[str], None] = _say
) -> MetricsServer:
    """Serve /metrics and /debug/pprof/profile from `runtime` on `listen` (HOST:PORT;
    port 0 picks one) until the returned closer is called. `runtime` may be a function
    returning the runtime running now (None while there is none), for an agent that
    swaps its Runtime on a reload: the flow counters carry on across the swap. ValueError for a bad
    address, OSError when it cannot be bound."""
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Exporter(runtime))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, _resident_memory_bytes, fds
    server_class = (
        type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
    )
    server = server_class((host, port), _Handler)
    server.registry, server.runtime = registry, runtime
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    closer = MetricsServer(server, thread)
    if not is_loopback(host):
        say(
            f"ebpftop: metrics and CPU profiles served on {closer.url} beyond this host "
            "(read-only: anyone who reaches it can read them)"
        )
    return closer
