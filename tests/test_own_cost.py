"""ebpftop's own cost: the selfcost source, the `$` screen and `snapshot --json`'s own_cost.

The screen turns the kernel's BPF run-time stats on while it is open and off when it
closes; against real BPF (a veth pair in namespaces made here) the flows program's run
count grows with the packets sent while it is open, and stops once it is closed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_support import (
    assert_nothing_raw_reaches_the_terminal,
    make_app,
    screen_text,
    snap,
    terminal_bytes,
)
from test_app_hostile import HOSTILE, MARKUP

from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.profiles.model import ProfilesData
from ebpftop.collectors.selfcost import collector as selfcost_mod
from ebpftop.collectors.selfcost.collector import SelfCostCollector
from ebpftop.collectors.selfcost.model import STATS_OFF, STATS_ON, BpfStats, ProgCost, SelfCostData
from ebpftop.collectors.selfcost.programs import held_prog_ids, owner_of
from ebpftop.collectors.selfcost.summary import losses, own_cost
from ebpftop.core.settings import Settings
from ebpftop.tui.screens import own_cost as own_cost_screen
from ebpftop.tui.screens.help import HelpScreen
from ebpftop.tui.screens.own_cost import OwnCostScreen

ROOT = Path(__file__).resolve().parent.parent


def prog(name: str, owner: str | None, pid: int = 7, **kw) -> ProgCost:
    base = dict(
        id=pid,
        name=name,
        type="tc",
        owner=owner,
        run_cnt=1000,
        run_time_ns=150_000,
        runs_per_s=1234.0,
        ns_per_run=150.0,
        cpu_percent=0.02,
    )
    return ProgCost(**(base | kw))


def selfcost_data(stats: BpfStats, programs=(), host=()) -> SelfCostData:
    return SelfCostData(
        pid=4242,
        cpu_percent=2.5,
        rss_bytes=90 << 20,
        threads=11,
        children=1,
        terminal_bps=4800.0,
        terminal_bytes=123456,
        stats=stats,
        programs=tuple(programs),
        host_programs=tuple(host),
    )


class Switched(SelfCostCollector):
    """The selfcost source with a stats switch that only remembers (no root needed),
    publishing fixed data."""

    def __init__(self, settings: Settings, data: SelfCostData) -> None:
        super().__init__(settings)
        self.fixed = data
        self.calls: list[str] = []
        self.is_on = False

    def stats_on(self) -> bool:
        self.calls.append("on")
        self.is_on = True
        return True

    def stats_off(self) -> None:
        self.calls.append("off")
        self.is_on = False

    def stats_state(self) -> BpfStats:
        return BpfStats(STATS_ON, time.time() - 5) if self.is_on else BpfStats(STATS_OFF)

    async def collect(self) -> SelfCostData:
        return self.fixed


async def wait_for(pilot, cond, what: str, bound: float = 30.0) -> None:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def switched_app(tmp_path, data: SelfCostData, **kw):
    app = make_app(tmp_path, **kw)
    fake = Switched(app.runtime.settings, data)
    app.runtime.collectors.append(fake)
    app.runtime.runners.clear()  # the test publishes; nothing samples
    return app, fake


# --- the screen ---------------------------------------------------------------------


@pytest.mark.parametrize("kiosk", [False, True])
async def test_dollar_opens_it_at_80x24_stats_on_while_open_and_off_after(tmp_path, kiosk):
    ours = [prog("ebpftop_fl_in", "flows", 11), prog("ebpftop_fl_eg", "flows", 12)]
    data = selfcost_data(BpfStats(STATS_ON, time.time()), ours, [*ours, prog("sd_fw_egress", None, 3)])
    app, fake = switched_app(tmp_path, data, kiosk=kiosk)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("dollar_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        assert fake.calls == ["on"]
        app.runtime.bus.publish(snap("selfcost", data))
        screen = app.screen
        await wait_for(pilot, lambda: "ebpftop_fl_eg" in screen.text, "the programs")
        text = screen.text
        assert "BPF stats ON while this is open" in text
        assert "ebpftop pid 4242" in text and "CPU 2.5%" in text and "RSS 90.0 MiB" in text
        assert "terminal 4.7 KiB/s written" in text
        assert "flows evicted (map full) —" in text  # flows never reported: not known, not 0
        assert ("read-only: closes itself after 2m00s" in text) == kiosk
        # the box fits the terminal and the first lines show without scrolling
        box = screen.query_one("VerticalScroll").region
        assert box.right <= 80 and box.bottom <= 24
        shown = screen_text(app)
        assert "Own cost" in shown and "BPF stats ON while this is open" in shown
        assert "ebpftop_fl_in" in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, OwnCostScreen), "the screen to close")
        assert fake.calls == ["on", "off"]


async def test_kiosk_closes_it_by_itself_and_the_stats_go_off(tmp_path, monkeypatch):
    monkeypatch.setattr(own_cost_screen, "KIOSK_CLOSE_S", 0.5)
    app, fake = switched_app(tmp_path, selfcost_data(BpfStats(STATS_OFF)), kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("dollar_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        await wait_for(pilot, lambda: not isinstance(app.screen, OwnCostScreen), "the screen to close")
        assert fake.calls == ["on", "off"] and not fake.is_on


async def test_hostile_program_names_are_shown_literally(tmp_path):
    bad = [prog(HOSTILE, None, 9), prog("x" * 40 + HOSTILE, None, 10)]
    data = selfcost_data(BpfStats(STATS_ON, time.time()), [prog(HOSTILE, "flows", 8)], bad)
    data = SelfCostData(**{**data.__dict__, "stats": BpfStats(STATS_OFF, None, HOSTILE)})
    app, _fake = switched_app(tmp_path, data)
    async with app.run_test(size=(120, 40)) as pilot:
        app.runtime.bus.publish(snap("selfcost", data))
        await pilot.press("dollar_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        await wait_for(pilot, lambda: "every BPF program" in app.screen.text, "the host programs")
        text = screen_text(app)
        assert MARKUP[:15] in text  # cut to the kernel's 15 bytes, shown as typed
        assert "xxxxxxxxxxxxxx…" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))


async def test_help_lists_the_key(tmp_path):
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        line = next(row for row in app.screen.listing().splitlines() if row.startswith("$ "))
        assert "own cost" in line and "kernel BPF stats on while it is open" in line
        assert "disabled" not in line


# --- the pieces ------------------------------------------------------------------------


def test_losses_come_from_the_sources_payloads_and_unknown_is_not_zero():
    flows = FlowsData((), 0, 0, 0, None, None, 3, 2, 0, 0, 10, 4, None)
    profiles = ProfilesData(hz=49, lost_samples=5)
    got = {(x.source, x.what): x.count for x in losses(flows, profiles)}
    assert got == {
        ("flows", "flows evicted (map full)"): 3,
        ("flows", "flows not inserted"): 2,
        ("flows", "TCP events lost (ring buffer full)"): 4,
        ("profiles", "CPU samples lost"): 5,
    }
    none = own_cost(None, None, snap("profiles", {"hz": 49}))
    assert none.process is None and all(x.count is None for x in none.losses)


def test_owner_names_each_part_that_loads_programs():
    assert [owner_of(n) for n in ("ebpftop_fl_in", "tracepoint__soc", "ebpftop_rl3_eg", "ebpftop_cpu")] == [
        "flows",
        "tcp events",
        "rules",
        "profiles",
    ]


def test_process_sample_counts_children():
    c = SelfCostCollector(Settings())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        c._sample()
        d = c._sample()
    finally:
        child.kill()
        child.wait()
    assert d.pid == os.getpid() and d.children >= 1
    assert d.cpu_percent is not None and d.cpu_percent >= 0.0
    assert d.rss_bytes > 10 << 20
    assert d.terminal_bytes is None and d.terminal_bps is None  # nothing wrote through the meter
    assert d.stats.state in (STATS_OFF, "on by sysctl") and d.host_programs == ()


def test_byte_meter_counts_what_the_driver_writes():
    from ebpftop.tui.terminal import count_writes

    class Driver:
        def __init__(self):
            self.out = []

        def write(self, data):
            self.out.append(data)

    d, meter = Driver(), selfcost_mod.ByteMeter()
    count_writes(d, meter)
    d.write("ab")
    d.write("─")  # three bytes in UTF-8
    assert d.out == ["ab", "─"] and meter.total == 5 and meter.attached
