"""Everything behind the screen, wired once: bus, store, collectors, recorder, gate.

The dashboard, the headless snapshot and the tests all build a Runtime; the app only
reads the store and listens to the bus, so a test (or a replay) hands the app a
Runtime with other sources and nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .audit import AuditLog
from .bus import Bus
from .collector import Collector, CollectorRunner
from .gate import Gate
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)


def default_collectors(settings: Settings) -> list[Collector]:
    """The live sources for these settings. Later sources add themselves here."""
    from ebpftop.collectors.canary.collector import CanaryCollector
    from ebpftop.collectors.flows.collector import FlowsCollector
    from ebpftop.collectors.host import HostCollector
    from ebpftop.collectors.profiles.collector import from_settings as profiles_collector
    from ebpftop.collectors.rules.collector import RulesCollector

    collectors = [
        HostCollector(interval=settings.refresh),
        FlowsCollector(settings.ifaces, interval=settings.refresh),
        # always present: without prometheus_url it reports "off" with how to turn it on
        CanaryCollector(settings),
        profiles_collector(settings),  # BPF sampler off without root; pprof still works
        RulesCollector(settings),  # reads the pinned rule set; empty when none is enforced
    ]
    if settings.rollout_controller:
        from ebpftop.collectors.rollout.collector import RolloutCollector

        collectors.append(RolloutCollector(settings))
    return collectors


class Runtime:
    def __init__(
        self,
        settings: Settings,
        collectors: list[Collector] | None = None,
        *,
        bus: Bus | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus or Bus()
        self.store = store or Store(settings.history)
        self.bus.subscribe(self.store)
        self.collectors = default_collectors(settings) if collectors is None else collectors
        self.runners = [CollectorRunner(c, self.bus) for c in self.collectors]
        # Touches no file until the first action: building a Runtime needs no root.
        self.gate = Gate(AuditLog(settings.audit_log, settings.audit_key), read_only=settings.kiosk)
        self._tasks: list[asyncio.Task] = []
        self._closers: list[Callable[[], object]] = []
        self.recorder = None  # a record.Recorder once start() opened settings.record

    @property
    def read_only(self) -> bool:
        return self.settings.kiosk

    def on_close(self, fn: Callable[[], object]) -> None:
        """Run `fn` (sync or async) when the runtime stops, last registered first."""
        self._closers.append(fn)

    async def start(self) -> None:
        if self.settings.record and self.recorder is None:
            from .record import start_recording

            self.recorder = start_recording(self)
        for runner in self.runners:
            self._tasks.append(asyncio.create_task(runner.run(), name=f"collector:{runner.collector.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        while self._closers:
            fn = self._closers.pop()
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("closing %r failed", fn)
