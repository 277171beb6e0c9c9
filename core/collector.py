"""The collector seam: one async worker per source, each publishing snapshots.

A collector implements `collect()` (one sample, returning its payload); the runner owns
timing, health and backoff so every source degrades the same way: a failure marks the
source degraded (it had data) or down (it never had), the pane says why, and the app
carries on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bus import Bus
from .model import Health, HealthState, Snapshot

log = logging.getLogger(__name__)


class SourceUnavailable(Exception):
    """The source cannot work here (not root, no BPF, not configured...).

    `hint` tells the user what to do. `off=True` means "not configured", which is not
    a failure.
    """

    def __init__(self, message: str, hint: str = "", *, off: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.off = off


class Collector(ABC):
    """One source. Blocking work belongs in `asyncio.to_thread`, never on the loop."""

    name: str = "?"
    interval: float = 1.0
    urgent: bool = False
    """Started first, the others once it has published (core/runtime.py): its first
    sample can name an incident already under way."""

    async def start(self) -> None:  # noqa: B027  # optional hook: a source with nothing to acquire keeps it
        """Acquire resources (load BPF, open clients). May raise SourceUnavailable."""

    @abstractmethod
    async def collect(self) -> Any:
        """Return one payload. May raise SourceUnavailable or any error."""

    async def close(self) -> None:  # noqa: B027  # optional hook: a source holding nothing keeps it
        """Release everything `start` acquired; must be safe to call twice."""

    def degraded_reason(self, payload: Any) -> str:
        """A non-empty reason marks a successful sample as degraded (e.g. lost events)."""
        return ""


@dataclass
class RunnerState:
    seq: int = 0
    errors: int = 0
    last_ok: float | None = None


MAX_BACKOFF = 30.0


class CollectorRunner:
    """Drives one collector: start, sample every `interval`, back off on failure."""

    def __init__(self, collector: Collector, bus: Bus, *, clock: Callable[[], float] = time.time) -> None:
        self.collector = collector
        self.bus = bus
        self.state = RunnerState()
        self._clock = clock
        self._retry_in = 0.0
        self.published = asyncio.Event()  # its first snapshot (data, or why not) is out

    def _publish(self, health: Health, data: Any = None, at: float | None = None) -> None:
        self.state.seq += 1
        when = self._clock() if at is None else at
        self.bus.publish(Snapshot(self.collector.name, self.state.seq, when, health, data))
        self.published.set()  # after the subscribers: the frame showing it is asked for first

    def _fail(self, exc: BaseException) -> float:
        """Publish the failure; return how long to wait before trying again."""
        self.state.errors += 1
        if isinstance(exc, SourceUnavailable):
            state = HealthState.OFF if exc.off else HealthState.DOWN
            self._publish(Health(state, exc.message, exc.hint, self.state.last_ok, self.state.errors))
            return MAX_BACKOFF
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        state = HealthState.DEGRADED if self.state.last_ok is not None else HealthState.DOWN
        self._publish(Health(state, message, "", self.state.last_ok, self.state.errors))
        return min(MAX_BACKOFF, self.collector.interval * (2.0 ** min(self.state.errors, 5)))

    async def run_once(self) -> bool:
        """One sample; True when it delivered data."""
        try:
            payload = await self.collector.collect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("collector %s failed", self.collector.name, exc_info=True)
            self._retry_in = self._fail(exc)
            return False
        now = self._clock()
        self.state.errors = 0
        self.state.last_ok = now
        reason = self.collector.degraded_reason(payload)
        state = HealthState.DEGRADED if reason else HealthState.OK
        self._publish(Health(state, reason, "", now, 0), payload, at=now)
        return True

    async def run(self) -> None:
        c = self.collector
        while True:
            try:
                await c.start()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("collector %s failed to start", c.name, exc_info=True)
                await asyncio.sleep(self._fail(exc))
        try:
            while True:
                started = time.monotonic()
                ok = await self.run_once()
                if ok:
                    delay = next_tick(c.interval, time.monotonic(), started)
                else:
                    delay = max(c.interval, self._retry_in)
                await asyncio.sleep(delay)
        finally:
            await c.close()


def next_tick(interval: float, now: float, started: float) -> float:
    """Seconds to the next multiple of `interval` on the monotonic clock after the one
    this sample started in. Collectors of the same interval thus sample together and
    the dashboard shows them in one frame (tui/flush.py); a sample that overran its
    interval waits for the next grid point instead of starting at once."""
    if interval <= 0:
        return 0.0
    due = (math.floor(started / interval) + 1) * interval
    while due <= now:
        due += interval
    return due - now


async def run_all(collectors: list[Collector], bus: Bus) -> None:
    """Run every collector until cancelled; one failing never stops the others."""
    runners = [CollectorRunner(c, bus) for c in collectors]
    await asyncio.gather(*(r.run() for r in runners), return_exceptions=True)
