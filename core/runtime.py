"""Everything behind the screen, wired once: bus, store, collectors, recorder, gate.

The caller chooses the sources (the cli from collectors.registry, a test its fakes, a
replay none); the app only reads the store and listens to the bus, so a test (or a
replay) hands the app a Runtime with other sources and nothing else changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from .audit import AuditLog
from .bus import Bus
from .collector import Collector, CollectorRunner
from .gate import Gate
from .settings import Settings
from .store import Store

if TYPE_CHECKING:
    from .record import Recorder

log = logging.getLogger(__name__)

HEAD_START = 2.0  # seconds at most the urgent sources run alone at start (Collector.urgent)


def audited_gate(settings: Settings) -> Gate:
    """The action gate for these settings: their audit log and key, read-only in kiosk
    mode. Every actor (the dashboard, the CLI verbs) gets its gate from here."""
    # Touches no file until the first action: building it needs no root.
    return Gate(AuditLog(settings.audit_log, settings.audit_key), read_only=settings.kiosk)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        collectors: list[Collector],
        *,
        gate: Gate | None = None,
        bus: Bus | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus or Bus()
        self.store = store or Store(settings.history)
        self.bus.subscribe(self.store)
        self.collectors = collectors
        self.runners = [CollectorRunner(c, self.bus) for c in self.collectors]
        self.gate = gate or audited_gate(settings)
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], object]] = []
        self.recorder: Recorder | None = None  # once start() opened settings.record

    @property
    def read_only(self) -> bool:
        return self.settings.kiosk

    @functools.cached_property
    def node_name(self) -> str | None:
        """The watched node's name before its first host sample, so the first frame names
        the node: this machine when a live host collector watches it. Asked at every
        frame: looked up once."""
        return socket.gethostname() if any(c.name == "host" for c in self.collectors) else None

    @property
    def live(self) -> bool:
        """Samples arrive on their sources' own cadence (collectors here, or an agent's
        stream), so a screen batches them into one frame per refresh; otherwise (a replay,
        snapshots published by hand) each is drawn as it comes."""
        return bool(self.collectors)

    def producers(self) -> frozenset[str]:
        """The sources something will publish: a pane of any other says it has none."""
        return frozenset(c.name for c in self.collectors)

    def on_close(self, fn: Callable[[], object]) -> None:
        """Run `fn` (sync or async) when the runtime stops, last registered first."""
        self._closers.append(fn)

    async def start(self) -> None:
        if self.settings.record and self.recorder is None:
            from .record import start_recording

            self.recorder = start_recording(self)
        urgent = [r for r in self.runners if r.collector.urgent]
        rest = [r for r in self.runners if not r.collector.urgent]
        for runner in urgent:
            self._run(runner)
        if urgent and rest:
            self._tasks.append(asyncio.create_task(self._start_after(urgent, rest), name="collectors:rest"))
        else:
            for runner in rest:
                self._run(runner)

    def _run(self, runner: CollectorRunner) -> None:
        self._tasks.append(asyncio.create_task(runner.run(), name=f"collector:{runner.collector.name}"))

    async def _start_after(self, urgent: list[CollectorRunner], rest: list[CollectorRunner]) -> None:
        """Start `rest` once every urgent source has published its first snapshot (data, or
        why not), or after HEAD_START: their imports, BPF compiles and first frames take
        seconds of CPU that, on a small busy node, delayed the verdict naming an incident."""
        waits = [asyncio.create_task(r.published.wait()) for r in urgent]
        try:
            await asyncio.wait(waits, timeout=HEAD_START)
        finally:
            for w in waits:
                w.cancel()
        for runner in rest:
            self._run(runner)

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
