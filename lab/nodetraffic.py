"""A fleet node's own TCP traffic: an echo server in the node's namespace and a client in
its pod's namespace (lab/nodes.py).

    python -m ebpftop.lab.nodetraffic serve --listen 198.18.0.193 --port 7000
    python -m ebpftop.lab.nodetraffic client --to 198.18.0.193 --port 7000 --conns 5 --stream 16000

The client opens --conns short connections a second (a request, the echo, close: flows
and connect latency) and keeps one long connection moving --stream bytes a second (a
steady byte rate). Every failure is counted and retried, never fatal: `lab inject nodeK
retransmits=on` drops packets on purpose. A summary line every 5 s goes to the log.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time

REQUEST = 512
REPORT_S = 5.0
TIMEOUT_S = 10.0


def serve(host: str, port: int) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    print(f"nodetraffic: echo server on {host}:{port}", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    conn.settimeout(60.0)
    with conn, contextlib.suppress(OSError):
        while data := conn.recv(65536):
            conn.sendall(data)


class _Counts:
    def __init__(self) -> None:
        self.short_ok = self.short_failed = self.stream_bytes = self.stream_restarts = 0


def client(host: str, port: int, conns: float, stream_bps: int) -> None:
    counts = _Counts()
    threading.Thread(target=_stream, args=(host, port, stream_bps, counts), daemon=True).start()
    print(f"nodetraffic: {conns:g} connections/s and {stream_bps} B/s to {host}:{port}", flush=True)
    interval = 1.0 / conns
    due = next_report = time.monotonic()
    while True:
        due += interval
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_S) as c:
                c.sendall(b"q" * REQUEST)
                got = 0
                while got < REQUEST and (chunk := c.recv(REQUEST - got)):
                    got += len(chunk)
            counts.short_ok += got == REQUEST
            counts.short_failed += got != REQUEST
        except OSError:
            counts.short_failed += 1
        now = time.monotonic()
        if now >= next_report:
            next_report = now + REPORT_S
            print(
                f"short_ok={counts.short_ok} short_failed={counts.short_failed} "
                f"stream_bytes={counts.stream_bytes} stream_restarts={counts.stream_restarts}",
                flush=True,
            )
        # paced on the clock; a connection slowed by loss does not make the next ones burst
        due = max(due, now)
        time.sleep(max(0.0, due - now))


def _stream(host: str, port: int, bps: int, counts: _Counts) -> None:
    chunk = b"s" * max(1, bps // 10)
    while True:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_S) as c:
                c.settimeout(TIMEOUT_S)
                while True:
                    c.sendall(chunk)
                    got = 0
                    while got < len(chunk):
                        data = c.recv(len(chunk) - got)
                        if not data:
                            raise ConnectionError("closed")
                        got += len(data)
                    counts.stream_bytes += len(chunk)
                    time.sleep(0.1)
        except OSError:
            counts.stream_restarts += 1
            time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--to", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--conns", type=float, default=5.0, help="short connections per second")
    c.add_argument("--stream", type=int, default=16000, help="bytes per second on the long connection")
    args = p.parse_args()
    if args.mode == "serve":
        serve(args.listen, args.port)
    else:
        client(args.to, args.port, args.conns, args.stream)


if __name__ == "__main__":
    main()
