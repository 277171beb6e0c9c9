"""What was read of a process, kept per (pid, comm) for `ttl` seconds.

Flows' identities and Profiles' tags both read /proc per process; a busy node must cost
a few reads per second, not one per flow or sample. A new comm for a pid (an exec, or
the pid reused) is a new entry. At MAX_ENTRIES the expired ones go, and if that is not
enough, all of them: the cache never grows past it, however many processes come and go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 8192


class PidCache(Generic[T]):
    def __init__(
        self,
        read: Callable[[int, str | None], T],
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[int, str | None], tuple[float, T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def now(self) -> float:
        return self._clock()

    def get(self, pid: int, comm: str | None = None, *, early: float = 0.0) -> T:
        """The value, read again when it expires within `early` seconds (refreshing the
        ones about to expire along with one that has keeps the reads together)."""
        now = self._clock()
        hit = self._entries.get((pid, comm))
        if hit is not None and hit[0] > now + early:
            return hit[1]
        if hit is None and len(self._entries) >= MAX_ENTRIES:
            self.prune(now)
        value = self._read(pid, comm)
        self._entries[(pid, comm)] = (now + self.ttl, value)
        return value

    def cached(self, pid: int, comm: str | None, now: float) -> T | None:
        """The value while fresh at `now` (this cache's clock), else None; reads nothing."""
        hit = self._entries.get((pid, comm))
        return hit[1] if hit is not None and hit[0] > now else None

    def prune(self, now: float | None = None) -> int:
        """Drop the expired entries (all of them at MAX_ENTRIES); returns how many expired."""
        now = self._clock() if now is None else now
        old = [k for k, (exp, _) in self._entries.items() if exp <= now]
        for key in old:
            del self._entries[key]
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        return len(old)
