"""The coalescing flush of snapshots into the dashboard's panes and header
(`SnapshotFlush`, mixed into `EbpftopApp`).

The bus subscriber only marks sources dirty and schedules one flush, which hands each
dirty pane one `PaneFeed` built from the store however many snapshots arrived; paused,
nothing is drawn. Live, flushes fall on frame slots, one per refresh interval just after
the collectors' common tick, so the screen is updated once a second, not once per
source. A slow timer updates the ages, and nothing else ticks, so an idle dashboard
costs next to nothing.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from ebpftop.actions.rollback_control import RollbackControl
from ebpftop.core.alarms import Alarm, data_alarms
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.replay import Replayer
from ebpftop.core.runtime import Runtime
from ebpftop.core.store import last_good
from ebpftop.core.stream import AGENT_SOURCE, AgentLink

from .panes.base import PaneFeed, SourcePane
from .panes.header import HostHeader, Marks
from .text import clean

if TYPE_CHECKING:
    from textual.app import App

    _AppBase = App[int]
else:
    _AppBase = object

MARKER_MAX = 200
MARKER_SOURCE = "marker"
RECORDER_SOURCE = "recorder"
# After a tick of the collectors' grid, how long their samples get to arrive before the
# frame that shows them (a sample later than this waits for the next frame).
FRAME_DELAY = 0.3
# Sources without a pane whose trouble still belongs in the header's problem line.
HEADER_SOURCES = (RECORDER_SOURCE, "rollout", AGENT_SOURCE)
OWN_COST_SOURCE = "selfcost"  # drawn by the own-cost screen while it is open


class SnapshotFlush(_AppBase):
    """The app's data side: bus subscriber, flush, ages tick, header."""

    # Set by EbpftopApp.__init__ / compose / on_mount.
    runtime: Runtime
    replay: Replayer | None
    rollback_control: RollbackControl
    paused: bool
    _clock: Callable[[], float]
    _panes: dict[str, SourcePane]
    _order: list[SourcePane]
    _dirty: set[str]
    _data_alarms: dict[str, tuple[Alarm, ...]]
    _flush_scheduled: bool
    _last_frame: float
    redraw_every: float
    _aged_by_flush: bool
    _pending: int
    _ui_loop: asyncio.AbstractEventLoop | None
    _main_screen: Screen[Any] | None
    _recorder_state: str | None
    _header: HostHeader | None
    _enforced_told: bool

    if TYPE_CHECKING:

        @property
        def read_only(self) -> bool: ...

        def _tell_enforced(self, snap: Snapshot) -> None: ...

        def _show_own_cost(self) -> None: ...

    def _on_snapshot(self, snap: Snapshot) -> None:
        """Bus subscriber: cheap, never draws. Safe to call from another thread."""
        loop = self._ui_loop
        if loop is not None and threading.get_ident() != self._thread_id:
            loop.call_soon_threadsafe(self._on_snapshot, snap)
            return
        if snap.source == "canary":
            self.rollback_control.observe(snap)  # auto-rollback counts evaluations even while paused
        if snap.source == "rules" and not self._enforced_told and snap.data is not None:
            self._tell_enforced(snap)
        self._dirty.add(snap.source)
        if self.paused:
            self._pending += 1
            return
        wait = self._frame_wait()
        if wait > 0 and self._news(snap):
            # An error the screen does not show yet (the canary failing, as read from
            # history at start) is drawn now: waiting for the frame slot cost up to a
            # refresh interval of the time it takes to name an incident.
            self._flush_scheduled = True
            self.call_later(self._flush_dirty)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            if wait > 0:
                self.set_timer(wait, self._flush_dirty, name="frame")
            else:
                self.call_later(self._flush_dirty)

    def _news(self, snap: Snapshot) -> bool:
        """Whether `snap` raises an error alarm of a kind its pane's source does not show,
        or is a viewer's link to its agent going down or coming back (the header says
        AGENT DOWN at once, not at the next frame slot)."""
        if snap.source == AGENT_SOURCE:
            history = self.runtime.store.history(AGENT_SOURCE)
            return len(history) < 2 or _link_state(history[-2]) != _link_state(snap)
        if snap.data is None or snap.source not in self._panes:
            return False
        shown = {a.kind for a in self._data_alarms.get(snap.source, ()) if a.severity == "error"}
        history = self.runtime.store.history(snap.source)
        return any(a.severity == "error" and a.kind not in shown for a in data_alarms(snap, history))

    def _frame_wait(self) -> float:
        """Seconds until the next frame slot: collectors tick together on one grid
        (core/collector.py), so a frame FRAME_DELAY after each tick shows them all at
        once: one screen update per refresh interval, not one per source."""
        every = self.redraw_every
        if every <= 0:
            return 0.0
        t = time.monotonic()
        slot = math.floor((t - FRAME_DELAY) / every) * every + FRAME_DELAY
        if slot <= self._last_frame:
            slot += every
        return max(0.0, slot - t)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        if self.paused or not self._dirty or not self._drawable():
            return
        self._last_frame = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        now = self.now()
        with self.batch_update():
            for pane in self._order:
                if pane.source in dirty or dirty.intersection(pane.REDRAWN_BY):
                    pane.show(self._feed(pane, now))
                elif dirty.intersection(pane.RELATED):
                    pane.update_related(self._related(pane))
            # Ages ride along with the data (the host sample comes every second), so
            # one screen update a second carries both instead of two.
            for pane in self._order:
                pane.update_health(now)
            self._draw_header()
        self._aged_by_flush = True
        if MARKER_SOURCE in dirty:
            self._show_marker(self.runtime.store.latest(MARKER_SOURCE))
        if RECORDER_SOURCE in dirty:
            self._show_recorder(self.runtime.store.latest(RECORDER_SOURCE))
        if OWN_COST_SOURCE in dirty:
            self._show_own_cost()

    def _show_marker(self, snap: Snapshot | None) -> None:
        marker = snap.data if snap is not None else None
        text, author = getattr(marker, "text", None), getattr(marker, "author", None)
        if text is not None:
            self.notify(
                f"{clean(text, MARKER_MAX)} — {clean(author, 40)}", title="incident marker", timeout=8
            )

    def _show_recorder(self, snap: Snapshot | None) -> None:
        """Say once, loudly, when recording stops: the operator is relying on it."""
        status = snap.data if snap is not None else None
        state = getattr(status, "state", None)
        if snap is not None and state in ("stopped", "failed") and state != self._recorder_state:
            reason = clean(getattr(status, "reason", "") or snap.health.message, 200)
            self.notify(f"recording {state}: {reason}", title="recorder", severity="error", timeout=30)
        self._recorder_state = state

    def _producers(self) -> frozenset[str]:
        """Sources something will publish: the recording's, the live collectors', an agent's."""
        if self.replay is not None:
            return frozenset(self.replay.sources)
        return self.runtime.producers()

    def _absent(self, source: str) -> Snapshot | None:
        """A stand-in for a source nothing will ever publish, so it does not say
        "starting" forever."""
        if source in self._producers():
            return None
        why = (
            "not in this recording"
            if self.replay is not None
            else "no collector for this source in this build"
        )
        return Snapshot(source, 0, self.now(), Health(HealthState.OFF, why))

    def _feed(self, pane: SourcePane, now: float) -> PaneFeed:
        """Everything `pane` draws, from the store; its data alarms are kept for the header."""
        store = self.runtime.store
        source = pane.source
        snap, history = store.latest(source), store.history(source)
        alarms = data_alarms(snap, history) if snap is not None else ()
        self._data_alarms[source] = alarms
        control = self.rollback_control
        return PaneFeed(
            snapshot=snap if snap is not None else self._absent(source),
            last_good=last_good(snap, history),
            now=now,
            history=history,
            alarms=alarms,
            related=self._related(pane),
            auto_rollback=control.status_line(),
            rollback_key=control.available() and not self.read_only,
        )

    def _related(self, pane: SourcePane) -> dict[str, tuple[Snapshot, ...]]:
        return {source: self.runtime.store.history(source) for source in pane.RELATED}

    def _drawable(self) -> bool:
        """False once shutdown has taken the widgets away (a timer may still fire)."""
        return self._header is not None and self._header.is_attached

    def _redraw_all(self) -> None:
        self._dirty.clear()
        now = self.now()
        with self.batch_update():
            for pane in self._order:
                pane.show(self._feed(pane, now))
            self._draw_header()

    def _draw_header(self) -> None:
        header = self._header
        if header is None or not header.is_attached:
            return
        store = self.runtime.store
        health: dict[str, Health] = {}
        waiting: list[str] = []
        for source in ("host", *self._panes):
            snap = store.latest(source) or self._absent(source)
            if snap is None:
                waiting.append(source)
            else:
                health[source] = snap.health
        for source in HEADER_SOURCES:
            snap = store.latest(source)
            if snap is not None:
                health[source] = snap.health
        header.update_from(self.marks(), store.latest("host"), health, tuple(waiting), self._alarms())

    def _alarms(self) -> tuple[Alarm, ...]:
        """The data alarms of what the panes show (frozen with them while paused); the
        header adds the sources' health alarms (core/alarms.py)."""
        return tuple(alarm for pane in self._order for alarm in self._data_alarms.get(pane.source, ()))

    def marks(self) -> Marks:
        replay = ""
        if self.replay is not None:
            replay = self.replay.status_text()
        paused = self.paused or bool(self.replay is not None and self.replay.paused)
        rec = self.runtime.store.latest(RECORDER_SOURCE) if self.replay is None else None
        status = rec.data if rec is not None else None
        return Marks(
            self.TITLE or "",
            self.read_only,
            paused,
            self._pending,
            replay,
            recording=str(getattr(status, "state", "") or ""),
            recording_size=float(getattr(status, "bytes", 0) or 0),
            node=self.runtime.node_name,
            agent=_agent_link(self.runtime.store.latest(AGENT_SOURCE)),
        )

    def now(self) -> float:
        """Wall time for ages; in a replay, the recording's time at the current position."""
        r = self.replay
        if r is not None and len(r):
            return r.tick_time(max(0, r.position))
        return self._clock()

    def _tick(self) -> None:
        """Ages for when no data flows (sources down, paused): a flush since the last
        tick already redrew them."""
        if not self._drawable():
            return
        if self._aged_by_flush:
            self._aged_by_flush = False
            return
        now = self.now()
        with self.batch_update():
            if not self.paused:
                for pane in self._order:
                    pane.update_health(now)
            self._draw_header()

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
        if not paused:
            self._pending = 0
            self._flush_dirty()
        if self._main_screen is not None:
            self._draw_header()


def _agent_link(snap: Snapshot | None) -> AgentLink | None:
    """The link to the agent this dashboard views (None when it collects itself)."""
    link = snap.data if snap is not None else None
    return link if isinstance(link, AgentLink) else None


def _link_state(snap: Snapshot) -> tuple[HealthState, str]:
    return snap.health.state, snap.data.state if isinstance(snap.data, AgentLink) else ""
