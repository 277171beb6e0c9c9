"""Which process (and so which service, unit, container, pod) a flow belongs to.

First choice: pid/comm the kernel captured at connect() (process context, exact).
Otherwise -- sockets older than ebpftop, the accepting side, UDP, sockets in other
network namespaces -- the socket is looked up by its addresses in every namespace
that holds its local address (collectors/identity/sockets.py). The rest of the
identity (OpenTelemetry service, cgroup, namespace, pod) is read per process
(collectors/identity/process.py), once per process, not once per flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ebpftop.collectors.identity.model import Identity
from ebpftop.collectors.identity.otel import service_from_environ
from ebpftop.collectors.identity.process import IdentityCache
from ebpftop.collectors.identity.sockets import Place, Query, SocketFinder

__all__ = ["Attributor", "Owner", "Tuple4", "service_from_environ"]

# (local addr, local port, remote addr, remote port)
Tuple4 = tuple[str, int, str, int]
Owner = tuple[int, str | None]


class Finder(Protocol):
    unplaced: set[Query]

    @property
    def namespaces(self) -> int | None: ...

    @property
    def problem(self) -> str | None: ...

    def refresh(self) -> None: ...
    def find(self, queries: Iterable[Query]) -> dict[Query, Place | None]: ...


class Attributor:
    def __init__(
        self,
        *,
        refresh: float = 5.0,
        miss_retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        finder: Finder | None = None,
        identities: IdentityCache | None = None,
    ) -> None:
        self.refresh = refresh
        self._clock = clock
        self.finder: Finder = finder or SocketFinder()
        self.identities = identities or IdentityCache()
        self._last_walk: float | None = None
        self._known: dict[Query, Place | None] = {}
        # Sockets a lookup could not place are kept as misses: they do not trigger
        # another /proc walk by themselves (a walk for a new socket still places them),
        # and are forgotten every `miss_retry` seconds, so a socket bound later is found
        # within that time. Many unowned flows (a scan, UDP to closed ports) rotating
        # through the top N then cost one walk a minute, not one per refresh.
        self.miss_retry = miss_retry
        self._misses_since = clock()
        # Bumped whenever owner()'s answer for a tuple may change (a walk replaced the
        # tables, misses were forgotten, put-off lookups were answered): callers may keep
        # an answer while it is unchanged.
        self.generation = 0
        # While a tick runs on the event loop, lookups (a thread entering namespaces) and
        # the /proc walk would stall the screen: owner() then answers None for what it
        # would look up and says so in `scan_wanted`; the next tick runs in a thread and
        # calls run_deferred_scan().
        self.defer_scans = False
        self.scan_wanted = False
        self._pending: set[Query] = set()
        self.errors = 0

    def _walk_due(self) -> bool:
        return self._last_walk is None or self._clock() - self._last_walk >= self.refresh

    def _walk(self) -> None:
        self._last_walk = self._clock()
        try:
            self.finder.refresh()
        except OSError:
            self.errors += 1
        # Answers may be stale now (a socket closed, a pid reused): asked again. Misses
        # are kept until retry_misses forgets them.
        self._known = {q: p for q, p in self._known.items() if p is None}
        self.generation += 1

    def _resolve(self, queries: list[Query]) -> None:
        if self._last_walk is None:
            self._walk()
        finder = self.finder
        found = finder.find(queries)
        # absent: no namespace here has its local address (a remote end): nothing to walk for
        missed = [q for q in queries if q in found and found[q] is None]
        if missed and self._walk_due():  # sockets newer than the walk
            self._walk()
            found.update(finder.find(missed))
        unplaced = finder.unplaced
        for q in queries:
            if q not in unplaced:  # a socket newer than the walk: asked again next time
                self._known[q] = found.get(q)

    def prefetch(self, queries: Iterable[Query]) -> None:
        """Look up together the sockets the next owner() calls will ask for."""
        new = [q for q in queries if q not in self._known]
        if not new:
            return
        if self.defer_scans:
            self._pending.update(new)
            self.scan_wanted = True
            return
        self._resolve(new)

    def owner(self, t: Tuple4, from_kernel: Owner | None, proto: str = "tcp") -> Owner | None:
        """(pid, comm): comm None when only the socket lookup knew the pid (the caller
        looks names up once per process, not once per flow)."""
        if from_kernel is not None:
            return from_kernel
        q = (proto, *t)
        self.retry_misses()
        if q not in self._known:
            if self.defer_scans:
                self._pending.add(q)
                self.scan_wanted = True
                return None  # not a miss: the deferred lookup answers it
            self._resolve([q])
        place = self._known.get(q)
        return (place[0], None) if place is not None else None

    def run_deferred_scan(self) -> None:
        """The lookups owner() put off, if any. A new generation either way, so callers
        keeping answers ask again for those given while they were put off."""
        if self.scan_wanted:
            self.scan_wanted = False
            pending, self._pending = [q for q in self._pending if q not in self._known], set()
            if pending:
                self._resolve(pending)
            self.generation += 1

    def retry_misses(self) -> None:
        """Forget the misses once `miss_retry` has passed. owner() does this itself; a
        caller keeping answers by `generation` calls it once a tick instead."""
        now = self._clock()
        if now - self._misses_since >= self.miss_retry:
            misses = [q for q, p in self._known.items() if p is None]
            if misses:
                for q in misses:
                    del self._known[q]
                self.generation += 1
            self._misses_since = now
        if len(self._known) > 65536:
            self._known.clear()
            self.generation += 1

    def identity(self, pid: int, comm: str | None = None) -> Identity:
        return self.identities.get(pid, comm)
