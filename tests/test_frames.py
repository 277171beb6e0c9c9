"""One screen update per refresh interval: collectors sample on one grid of the
monotonic clock (core/collector.py `next_tick`) and the dashboard draws them in one
frame just after each tick (tui/flush.py), instead of one frame per source."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from app_support import NOW, host_data, make_app, ok, screen_text, settings, snap
from test_header import failing

from ebpftop.collectors.canary.data import CanaryData
from ebpftop.collectors.canary.verdict import Verdict
from ebpftop.core.collector import Collector, next_tick
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.runtime import Runtime
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.header import HostHeader


def test_next_tick_is_the_next_grid_point_after_the_sample_started():
    assert next_tick(1.0, now=10.25, started=10.1) == pytest.approx(0.75)
    # Whenever a sample starts inside a second, the next one is at the second's end.
    assert next_tick(1.0, now=10.95, started=10.9) == pytest.approx(0.05)
    # A sample that overran its interval waits for the next grid point.
    assert next_tick(1.0, now=11.5, started=10.1) == pytest.approx(0.5)
    assert next_tick(5.0, now=12.0, started=11.0) == pytest.approx(3.0)
    assert next_tick(0.0, now=1.0, started=1.0) == 0.0


class Ticker(Collector):
    """Samples take their time, as real ones do (a map read, a scrape): each source's
    snapshot arrives apart from the others'."""

    def __init__(self, name: str, interval: float, takes: float) -> None:
        self.name = name
        self.interval = interval
        self.takes = takes
        self.samples = 0

    async def collect(self) -> int:
        await asyncio.sleep(self.takes)
        self.samples += 1
        return self.samples


class Counting(EbpftopApp):
    frames = 0

    def _flush_dirty(self) -> None:
        if self._dirty and not self.paused:
            self.frames += 1
        super()._flush_dirty()


async def test_four_sources_ticking_together_make_one_frame_per_interval(tmp_path):
    interval = 0.5
    tickers = [Ticker(name, interval, 0.04 * i) for i, name in enumerate(("a", "b", "c", "d"))]
    app = Counting(Runtime(settings(tmp_path, refresh=interval), collectors=tickers))
    assert app.redraw_every == interval
    async with app.run_test(size=(80, 24)):
        await asyncio.sleep(0.2)
        frames, samples = app.frames, sum(t.samples for t in tickers)
        await asyncio.sleep(8 * interval)
        frames, samples = app.frames - frames, sum(t.samples for t in tickers) - samples
    # About 8 ticks of 4 samples each: one frame per tick, not per sample.
    assert samples >= 4 * 6
    assert 6 <= frames <= 9, (frames, samples)


async def test_without_collectors_a_published_snapshot_is_drawn_at_once(tmp_path):
    app = EbpftopApp(Runtime(settings(tmp_path), collectors=[]))
    assert app.redraw_every == 0.0


async def test_a_viewer_of_an_agent_draws_on_the_frame_grid_like_a_collecting_dashboard(tmp_path):
    """An agent's stream brings each source's snapshot as its own frame (six a second):
    drawn one by one, a viewer cost more CPU than a dashboard collecting for itself."""
    from ebpftop.core.stream_client import ViewerRuntime

    app = EbpftopApp(ViewerRuntime(settings(tmp_path, refresh=0.5), str(tmp_path / "agent.sock")))
    assert app.redraw_every == 0.5


async def test_the_agent_going_down_or_coming_back_is_drawn_at_once_not_at_the_frame_slot(tmp_path):
    from ebpftop.core.stream import AGENT_SOURCE, AgentLink

    runtime = Runtime(settings(tmp_path, refresh=3600.0), collectors=[])
    app = EbpftopApp(runtime)

    def link(seq: int, state: str) -> Snapshot:
        health = ok(NOW) if state == "up" else Health(HealthState.DOWN, "agent down")
        s = Snapshot(AGENT_SOURCE, seq, NOW + seq, health, AgentLink(state, "/run/a.sock"))  # type: ignore[arg-type]
        runtime.bus.publish(s)  # the store has it before the app asks
        return s

    assert app._news(link(1, "up"))  # the first word of the link
    assert not app._news(link(2, "up"))  # a heartbeat: waits for the frame slot
    assert app._news(link(3, "down"))
    assert not app._news(link(4, "down"))
    assert app._news(link(5, "up"))


def canary(verdict: Verdict, seq: int) -> Snapshot:
    svc = replace(failing(), verdict=verdict)
    return snap("canary", CanaryData("http://p", (svc,)), ok(NOW), seq=seq, t=NOW)


async def test_an_error_the_screen_does_not_show_yet_is_drawn_without_waiting_for_the_frame_slot(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        app.redraw_every = 3600.0  # a live cadence whose next frame slot is an hour away

        async def header() -> str:
            await pilot.pause()
            await pilot.pause()
            return " ".join(screen_text(app).splitlines()[: app.query_one(HostHeader).size.height])

        app.runtime.bus.publish(snap("host", host_data()))
        assert "node-1" in await header()  # no frame since the last slot: drawn at once
        app.runtime.bus.publish(canary(Verdict.WARN, 1))
        assert "WARN" not in await header()  # a warning waits for the next slot
        app.runtime.bus.publish(canary(Verdict.FAIL, 2))
        assert "✖ canary FAIL checkout" in await header()
        app.runtime.bus.publish(canary(Verdict.WARN, 3))
        assert "FAIL" in await header()  # back to a warning: no news, the next frame says it
