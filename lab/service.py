"""The lab's instrumented HTTP service, run as stable and as canary.

    python -m ebpftop.lab.service --listen 0.0.0.0:8000 --version v1.1.0 --track canary

/metrics (OpenMetrics when asked, so `trace_id` exemplars survive the scrape),
knobs at /-/knobs (GET, PUT JSON) while running, /healthz always 200.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from .knobs import Knobs

KNOBS_PATH = "/-/knobs"
# CPU time the `cpu=on` path burns per request: at the default 2 canary req/s, a tenth
# of a core, enough for a 49 Hz profile to show it within seconds.
CPU_PATH_SECONDS = 0.05


class ServiceState:
    def __init__(self, version: str, track: str, base_latency_s: float) -> None:
        self.version = version
        self.track = track
        self.base_latency_s = base_latency_s
        self.knobs = Knobs()
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time spent answering an HTTP request.",
            ["version", "track"],
            registry=self.registry,
        )
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by status code.",
            ["version", "track", "code"],
            registry=self.registry,
        )


def cpu_heavy_path(deadline: float) -> int:
    """The knob `cpu=on`: a hashing loop a CPU profile shows by name."""
    rounds = 0
    digest = b"ebpftop-lab"
    while time.perf_counter() < deadline:
        for _ in range(200):
            digest = hashlib.sha256(digest).digest()
        rounds += 1
    return rounds


def make_handler(state: ServiceState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ebpftop-lab-service"

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would flood the log at steady load

        def _send(
            self,
            code: int,
            body: bytes,
            ctype: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(state.registry), ctype)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == KNOBS_PATH:
                with state.lock:
                    knobs = state.knobs
                self._send(200, json.dumps(knobs.to_dict()).encode())
            else:
                self._serve_request()

        do_HEAD = do_GET

        def do_PUT(self) -> None:
            if self.path.split("?", 1)[0] != KNOBS_PATH:
                self._send(405, b'{"error": "only PUT /-/knobs"}')
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= 4096:
                    raise ValueError("body must be 1-4096 bytes of JSON")
                knobs = Knobs.from_dict(json.loads(self.rfile.read(length)))
            except (ValueError, json.JSONDecodeError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())
                return
            with state.lock:
                state.knobs = knobs
            print(f"knobs set: {knobs.describe()}", flush=True)
            self._send(200, json.dumps(knobs.to_dict()).encode())

        def _serve_request(self) -> None:
            start = time.perf_counter()
            trace_id = os.urandom(16).hex()
            with state.lock:
                knobs = state.knobs
            # A little natural work so the histogram has a shape even with no knobs.
            time.sleep(random.expovariate(1.0 / state.base_latency_s) if state.base_latency_s > 0 else 0)
            if knobs.cpu:
                cpu_heavy_path(time.perf_counter() + CPU_PATH_SECONDS)
            if knobs.latency_s:
                time.sleep(knobs.latency_s)
            code = 500 if knobs.error_ratio and random.random() < knobs.error_ratio else 200
            body = json.dumps(
                {"track": state.track, "version": state.version, "trace_id": trace_id, "ok": code == 200}
            ).encode()
            self._send(code, body, headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"})
            elapsed = time.perf_counter() - start
            state.duration.labels(state.version, state.track).observe(
                elapsed, exemplar={"trace_id": trace_id}
            )
            state.requests.labels(state.version, state.track, str(code)).inc()

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy resets health-check and idle keep-alive connections: routine, and a
        # traceback for each would grow the log without bound.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        print(f"error serving {client_address[0]}: {type(exc).__name__}: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ebpftop-lab-service", description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="0.0.0.0:8000", help="host:port")
    p.add_argument("--version", required=True, help="value of the `version` label")
    p.add_argument("--track", required=True, help="value of the `track` label (stable, canary)")
    p.add_argument("--base-latency-ms", type=float, default=3.0, help="mean of the natural latency")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    state = ServiceState(args.version, args.track, args.base_latency_ms / 1000.0)
    # Pre-create the zero series so both variants exist in Prometheus before traffic.
    state.duration.labels(args.version, args.track)
    state.requests.labels(args.version, args.track, "200")
    state.requests.labels(args.version, args.track, "500")
    server = Server((host or "0.0.0.0", int(port)), make_handler(state))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(
        f"serving {args.track} {args.version} on {args.listen} "
        f"(OTEL_SERVICE_NAME={os.environ.get('OTEL_SERVICE_NAME', '')})",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
