"""Repainting only what changed: ages in 10 s steps, text widgets without needless
layout passes, the header line by line. An idle dashboard is mostly these paths."""

from __future__ import annotations

import time

import pytest
from textual.app import App, ComposeResult
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from ebpftop.core.model import Health, HealthState, HostData, Snapshot
from ebpftop.tui.panes import fmt
from ebpftop.tui.panes.header import HostHeader, Marks
from ebpftop.tui.panes.paint import forget, set_content


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (9.9, "9s"),
        (10, "10s"),
        (19, "10s"),
        (43, "40s"),
        (65, "1m00s"),
        (605, "10m"),
        (None, fmt.NO_DATA),
    ],
)
def test_age_steps_by_ten_seconds(seconds, shown):
    assert fmt.age(seconds) == shown


class Counting(App):
    CSS = "#wrap { height: auto; max-height: 3; }"

    def __init__(self) -> None:
        super().__init__()
        self.layouts = 0

    def compose(self) -> ComposeResult:
        yield Static(Content("one line"), id="line", markup=False)
        yield Static(Content(""), id="wrap", markup=False)
        yield HostHeader()

    def on_mount(self) -> None:
        screen_cls = type(self.screen)
        original = screen_cls._refresh_layout

        def counted(screen: Screen, *args, **kwargs):
            self.layouts += 1
            return original(screen, *args, **kwargs)

        self.screen._refresh_layout = counted.__get__(self.screen)  # this screen only


async def test_set_content_skips_unchanged_and_avoids_layout_when_height_stays():
    app = Counting()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        line = app.query_one("#line", Static)
        assert set_content(line, Content("updated 5s ago"))
        await pilot.pause()
        base = app.layouts
        assert set_content(line, Content("updated 6s ago"))  # same height: repaint only
        await pilot.pause()
        assert app.layouts == base and str(line.render()) == "updated 6s ago"
        assert not set_content(line, Content("updated 6s ago"))  # nothing to do
        assert set_content(line, Content.assemble(("updated 6s ago", "bold")))  # style counts
        await pilot.pause()
        assert app.layouts == base

        wrap = app.query_one("#wrap", Static)
        assert set_content(wrap, Content("a short line"))
        await pilot.pause()
        assert wrap.size.height == 1
        base = app.layouts
        assert set_content(wrap, Content("a line long enough to wrap at forty columns, twice over and more"))
        await pilot.pause()
        assert app.layouts > base and wrap.size.height == 2  # the height changed: layout
        forget(app.screen)
        assert set_content(wrap, Content("a line long enough to wrap at forty columns, twice over and more"))


def host(cpu: float) -> Snapshot:
    data = HostData(
        hostname="node-1",
        kernel="6.1",
        uptime_s=3600,
        cpu_percent=cpu,
        cpu_count=2,
        load=(0.1, 0.2, 0.3),
        mem_percent=10.0,
        mem_used=1 << 30,
        mem_total=8 << 30,
        net_rx_bps=0.0,
        net_tx_bps=0.0,
    )
    return Snapshot("host", 1, time.time(), Health(HealthState.OK, "", "", time.time(), 0), data)


async def test_header_repaints_only_the_lines_that_changed():
    app = Counting()
    async with app.run_test(size=(120, 12)) as pilot:
        header = app.query_one(HostHeader)
        health = {"flows": Health(HealthState.OK, "", "", time.time(), 0)}
        header.update_from(Marks(), host(5.0), health)
        await pilot.pause()
        assert "CPU 5%" in str(header.render())

        dirty: list = []
        original = header.refresh

        def spy(*regions, **kwargs):
            dirty.append(regions)
            return original(*regions, **kwargs)

        header.refresh = spy
        header.update_from(Marks(), host(7.0), health)  # only the host line differs
        assert len(dirty) == 1 and [r.y for r in dirty[0]] == [1]
        header.update_from(Marks(), host(7.0), health)  # nothing differs
        assert len(dirty) == 1
        header.update_from(Marks(paused=True), host(8.0), health)  # title and host lines
        assert [r.y for r in dirty[-1]] == [0, 1]
        await pilot.pause()
        lines = str(header.render()).splitlines()
        assert "PAUSED" in lines[0] and "CPU 8%" in lines[1] and "all sources OK" in lines[2]
