"""The lab's load generator: a steady request rate against one URL.

    python -m ebpftop.lab.loadgen --url http://198.18.0.20:8080/ --rate 20

Requests start on a fixed schedule whatever the latency, each on a fresh connection;
a tick with --max-inflight requests outstanding is counted as skipped, never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PATHS = ("/api/cart", "/api/checkout", "/api/items", "/api/items/42")
REPORT_S = 5.0


class Stats:
    def __init__(self) -> None:
        self.sent = self.ok = self.errors = self.failed = self.skipped = 0
        self.inflight = 0
        self.codes: dict[int, int] = {}  # answers other than 2xx/3xx, by status code

    def line(self) -> str:
        """Counts since the start; `lab status` reads the last two lines' difference."""
        codes = ",".join(f"{c}:{n}" for c, n in sorted(self.codes.items()))
        return (
            f"sent={self.sent} ok={self.ok} http_errors={self.errors} failed={self.failed} "
            f"skipped={self.skipped} inflight={self.inflight} codes={codes or '-'}"
        )


_LINE = re.compile(r"sent=(\d+) ok=(\d+) http_errors=\d+ failed=(\d+) .*codes=(\S+)")
# HAProxy's own answers when no server can: none available, a bad answer, no answer in time.
PROXY_FAILURES = (502, 503, 504)


@dataclass(frozen=True)
class Summary:
    """One summary line's counts (or the difference of two)."""

    sent: int = 0
    ok: int = 0
    failed: int = 0  # no connection, or no answer within the timeout
    codes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, line: str) -> Summary | None:
        m = _LINE.search(line)
        if m is None:
            return None
        codes = {}
        for item in m.group(4).split(","):
            code, _, n = item.partition(":")
            if code.isdigit() and n.isdigit():
                codes[int(code)] = int(n)
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), codes)

    def since(self, before: Summary) -> Summary:
        codes = {c: n - before.codes.get(c, 0) for c, n in self.codes.items()}
        return Summary(
            self.sent - before.sent,
            self.ok - before.ok,
            self.failed - before.failed,
            {c: n for c, n in codes.items() if n > 0},
        )

    def failing(self) -> str:
        """Why these requests count as failing ("" when they do not): no answer, or
        HAProxy answering for want of a server, or nothing at all succeeding."""
        proxy = sum(self.codes.get(c, 0) for c in PROXY_FAILURES)
        why = []
        if self.failed:
            why.append(f"{self.failed} without an answer")
        if proxy:
            why.append(f"{proxy} answered by HAProxy with {'/'.join(map(str, PROXY_FAILURES))}")
        if self.sent and not self.ok and not why:
            why.append("none succeeded")
        return ", ".join(why)

    def describe(self) -> str:
        text = f"{self.sent} sent, {self.ok} ok"
        if self.failed:
            text += f", {self.failed} failed (no connection or no answer)"
        if self.codes:
            text += ", HTTP " + ", ".join(f"{c} x{n}" for c, n in sorted(self.codes.items()))
        return text


async def one_request(host: str, port: int, path: str, timeout: float, stats: Stats) -> None:
    stats.inflight += 1
    stats.sent += 1
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ebpftop-lab-loadgen\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                status = await reader.readline()
                await reader.read()
            finally:
                writer.close()
        parts = status.split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if 200 <= code < 400:
            stats.ok += 1
        else:
            stats.errors += 1
            stats.codes[code] = stats.codes.get(code, 0) + 1
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        stats.failed += 1
    finally:
        stats.inflight -= 1


async def run(url: str, rate: float, max_inflight: int, timeout: float, report: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    period = 1.0 / rate
    start = time.monotonic()
    next_report = start + report
    tick = 0
    print(f"load: {rate:g} req/s against {url}", flush=True)
    while not stop.is_set():
        # Schedule against the start time, not the previous tick, so the rate does not drift.
        delay = start + tick * period - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                break
            except TimeoutError:
                pass
        tick += 1
        if stats.inflight >= max_inflight:
            stats.skipped += 1
        else:
            t = asyncio.create_task(one_request(host, port, random.choice(PATHS), timeout, stats))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        now = time.monotonic()
        if now >= next_report:
            print(stats.line(), flush=True)
            next_report = now + report
    for t in tasks:
        t.cancel()
    print("stopped: " + stats.line(), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ebpftop-lab-loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=20.0, help="requests per second")
    p.add_argument("--max-inflight", type=int, default=512)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--report", type=float, default=REPORT_S, help="seconds between summary lines")
    args = p.parse_args(argv)
    if not args.rate > 0:
        p.error("--rate must be more than 0")
    asyncio.run(run(args.url, args.rate, args.max_inflight, args.timeout, args.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
