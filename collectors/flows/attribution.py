"""Which process (and service) a flow belongs to.

First choice: pid/comm the kernel captured at connect() (process context, exact).
Otherwise -- sockets older than ebpftop, the accepting side, UDP -- a psutil socket
table, refreshed at most every `refresh` seconds and only when a flow is unowned.
The service name comes from the process environment (OpenTelemetry conventions).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

# (local addr, local port, remote addr, remote port)
Tuple4 = tuple[str, int, str, int]
Owner = tuple[int, str | None]


def service_from_environ(env: dict[str, str]) -> str | None:
    """OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES (as in the spec)."""
    name = env.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return value.strip()
    return None


def read_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


class Attributor:
    def __init__(
        self,
        *,
        refresh: float = 5.0,
        miss_retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        connections: Callable[[], Iterable[Any]] = lambda: psutil.net_connections(kind="inet"),
        environ: Callable[[int], dict[str, str]] = read_environ,
    ) -> None:
        self.refresh = refresh
        self._clock = clock
        self._connections = connections
        self._environ = environ
        self._last_scan: float | None = None
        self._exact: dict[Tuple4, int] = {}
        self._listen: dict[int, int] = {}  # local port -> pid (listeners and unconnected UDP)
        # Tuples a scan could not place: they do not trigger another /proc walk by
        # themselves (a scan for a new tuple still places them), and are forgotten every
        # `miss_retry` seconds, so a socket bound later is found within that time even
        # when nothing new comes along. Many unowned flows (a scan, UDP to closed ports)
        # rotating through the top N then cost one walk a minute, not one per refresh.
        self.miss_retry = miss_retry
        self._misses: set[Tuple4] = set()
        self._misses_since = clock()
        # Bumped whenever owner()'s answer for a tuple may change (a scan replaced the
        # tables, misses were forgotten): callers may keep an answer while it is unchanged.
        self.generation = 0
        # While a tick runs on the event loop a /proc walk (psutil, 10-30 ms) would stall
        # the screen: owner() then answers None for a tuple it would scan for and says so
        # in `scan_wanted`; the next tick runs in a thread and calls run_deferred_scan().
        self.defer_scans = False
        self.scan_wanted = False
        self._services: dict[tuple[int, float], str | None] = {}
        self._names: dict[int, tuple[float, str | None]] = {}
        self.errors = 0

    def _scan_due(self) -> bool:
        return self._last_scan is None or self._clock() - self._last_scan >= self.refresh

    def _scan(self) -> None:
        if not self._scan_due():
            return
        now = self._clock()
        self._last_scan = now
        exact: dict[Tuple4, int] = {}
        listen: dict[int, int] = {}
        try:
            conns = list(self._connections())
        except (psutil.Error, OSError):
            self.errors += 1
            return
        for c in conns:
            if not c.pid or not c.laddr:
                continue
            if c.raddr:
                exact[(c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port)] = c.pid
            else:
                listen.setdefault(c.laddr.port, c.pid)
        self._exact, self._listen = exact, listen
        self.generation += 1

    def owner(self, t: Tuple4, from_kernel: Owner | None) -> Owner | None:
        """(pid, comm) -- comm None when only the socket table knew the pid (the
        caller looks names up once per process, not once per flow)."""
        if from_kernel is not None:
            return from_kernel
        pid = self._exact.get(t) or self._listen.get(t[1])
        if pid is not None:
            return pid, None
        self.retry_misses()
        if t not in self._misses:
            if self.defer_scans and self._scan_due():
                self.scan_wanted = True
                return None  # not a miss: the deferred scan answers it
            self._scan()
            pid = self._exact.get(t) or self._listen.get(t[1])
            if pid is None:
                self._misses.add(t)
        if pid is None:
            return None
        return pid, None

    def run_deferred_scan(self) -> None:
        """The scan owner() put off, if any. A new generation either way, so callers
        keeping answers ask again for those given while the scan was put off."""
        if self.scan_wanted:
            self.scan_wanted = False
            self._scan()
            self.generation += 1

    def retry_misses(self) -> None:
        """Forget the misses once `miss_retry` has passed. owner() does this itself; a
        caller keeping answers by `generation` calls it once a tick instead."""
        now = self._clock()
        if now - self._misses_since >= self.miss_retry:
            if self._misses:
                self._misses.clear()
                self.generation += 1
            self._misses_since = now

    def comm(self, pid: int) -> str | None:
        hit = self._names.get(pid)
        try:
            p = psutil.Process(pid)
            started = p.create_time()
            if hit and hit[0] == started:
                return hit[1]
            name = p.name()
        except psutil.Error:
            return hit[1] if hit else None
        self._names[pid] = (started, name)
        if len(self._names) > 4096:
            self._names.clear()
        return name

    def service(self, pid: int) -> str | None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            started = 0.0
        key = (pid, started)
        if key not in self._services:
            if len(self._services) > 4096:
                self._services.clear()
            self._services[key] = service_from_environ(self._environ(pid))
        return self._services[key]
