"""Incidents already under way, opened cold: five scripted lab scenarios (issue 19's
"Scenarios as tests").

Each scenario sets up a real fault in the lab (tests/lab_scenarios.py: the canary slower,
failing or burning CPU, the stable's process gone, a UDP flood on the stable's link),
waits until the fault shows at its source and has run UNDER_WAY_S, and only then opens
the whole dashboard as `ebpftop --lab` wires it (every default source: BPF flows, rules,
profiles, canary from Prometheus, HAProxy as the rollout) at 160x48. Without a key
pressed, the first screen must name the incident in the header, show its evidence in
its pane, and show the top of the unattended Flows pane's order. Then at 80x24 (panes
stacked: what a laptop's terminal shows), the keys that reach the evidence are pressed
and counted against KEYS.

Its own lab instance ("sc", 198.18.230.0/24, Prometheus 19230). Every wait is a poll on
a condition with a generous bound; nothing here measures speed (bench/triage_bench.py does).
"""

from __future__ import annotations

import re
import time

import pytest
from lab_scenarios import CFG, SCENARIOS, clear, flood_row, flow_rows, header, inject, names, pane, under_way
from labs import running_lab

from ebpftop.core.settings import Settings
from ebpftop.lab import manager

pytestmark = pytest.mark.integration

SCREEN_S = 120.0  # bound on waiting for the screen (BPF compiles on a shared, loaded machine)

# scenario -> the keys from the 80x24 first screen to the evidence (asserted: a change
# that makes the way longer or shorter shows here)
KEYS: dict[str, tuple[str, ...]] = {
    "latency": ("3", "x"),  # Canary pane, its slow trace ids: the slowest first, >= 300 ms
    "errors": ("3",),  # Canary pane: the 5xx ratio row fails
    # the slowest trace followed into Profiles: the samples shown (that request's, or the
    # canary's when it is older than the profiles kept) hold main.cpuHeavyPath. Its name is
    # on screen only after Enter on a pprof row, whose place varies (the BPF sampler's rows
    # above it lose Go frames), so that last step is not counted here.
    "cpu": ("3", "x", "enter"),
    "stable-down": ("3",),  # Canary pane: no stable p99 to compare with (the baseline is gone)
    "flood": (),  # the Flows pane, first at 80x24 too: its first row is the flood
}


@pytest.fixture(scope="module")
def lab():
    with running_lab(CFG) as layout:
        yield layout


@pytest.fixture
def scenario(request, lab):
    """The scenario's fault, under way; cleared again afterwards, and the lab back to
    passing before the next one opens (its history must not name this one)."""
    from lab_scenarios import poll, recovered

    s = SCENARIOS[request.param]
    clear()
    poll(lambda: recovered(lab), "the lab recovered from the scenario before", seconds=240.0)
    started = time.monotonic()
    for args in s.inject:
        inject(*args)
    try:
        under_way(s, started)
        yield s
    finally:
        for args in s.undo:
            inject(*args)


def test_every_scenario_has_its_key_count():
    assert set(KEYS) == set(SCENARIOS) and len(SCENARIOS) >= 5


def dashboard(tmp_path):
    from ebpftop.cli.wiring import dashboard_runtime
    from ebpftop.tui.app import EbpftopApp

    ep = manager.endpoints(CFG)
    assert ep is not None
    base = Settings(
        audit_log=str(tmp_path / "audit.jsonl"),
        audit_key=str(tmp_path / "audit.key"),
        rules_pin_dir=str(tmp_path / "no-rules"),  # no rule set of this machine's is read
        rules_state_dir=str(tmp_path / "rules-state"),
    )
    return EbpftopApp(dashboard_runtime(manager.wire_settings(base, ep)))


async def wait_screen(pilot, ok, what: str, seconds: float = SCREEN_S) -> str:
    """The screen's text once `ok(text)` holds (a bound on waiting, not a speed check)."""
    from app_support import screen_text

    end = time.monotonic() + seconds
    text = screen_text(pilot.app)
    while time.monotonic() < end:
        text = screen_text(pilot.app)
        if ok(text):
            return text
        await pilot.pause(0.2)
    raise AssertionError(f"{what}: not within {seconds:g} s; the screen:\n{text}")


def flows_at_top(app) -> bool:
    """The unattended Flows table shows the top of its order (busiest first)."""
    from ebpftop.tui.panes.flows.pane import FlowsPane
    from ebpftop.tui.panes.table import LineTable

    table = app.query_one(FlowsPane).query_one(LineTable)
    return table.count > 0 and table.top == 0


def rates(rows: list[str]) -> list[float]:
    """Each row's B/s (the column after the flow), in bytes."""
    out = []
    for row in rows:
        m = re.search(r"\s(\d+(?:\.\d+)?)([KMG]?)\s+\d", row)
        if m:
            out.append(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])
    return out


async def first_screen(pilot, s) -> str:
    """The 160x48 first screen once the header names the incident and the flows have
    their first rows; asserts the unattended Flows pane shows the top of its order."""
    text = await wait_screen(
        pilot, lambda t: names(s, t) and len(flow_rows(t)) >= 2, f"{s.name}: the header names it"
    )
    assert flows_at_top(pilot.app), "the unattended Flows pane left the top of its order"
    top = rates(flow_rows(text))
    assert top and top[0] == max(top), f"the first row is not the busiest: {flow_rows(text)}"
    return text


def canary(text: str) -> str:
    return "\n".join(pane(text, "3 Canary"))


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
async def test_the_first_screen_names_the_incident_and_the_keys_reach_its_evidence(scenario, tmp_path, lab):
    s = scenario
    app = dashboard(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        text = await first_screen(pilot, s)
        said = header(text)
        print(f"{s.name} first screen header: {said}")
        # the evidence beside it, on the same first screen
        if s.name in ("latency", "cpu"):
            assert re.search(r"p99 ratio\s+[\d.]+x\s+≤ 1.2x\s+fail", canary(text)), canary(text)
        if s.name == "latency":
            slow = [int(ms) for ms in re.findall(r"trace [0-9a-f]{32}\s+(\d+) ms", canary(text))]
            assert slow and slow[0] >= 300, canary(text)
        if s.name == "errors":
            assert re.search(r"5xx ratio\s+[\d.]+%\s+[\d.]+%\s+≤ 0.5%\s+fail", canary(text)), canary(text)
        if s.name == "stable-down":
            assert "stable 0%" in canary(text) and "canary only" in canary(text), canary(text)
        if s.name == "flood":
            assert flood_row(lab).search(flow_rows(text)[0]), flow_rows(text)
        await reach_the_evidence(pilot, s, lab)


async def reach_the_evidence(pilot, s, lab) -> None:
    """At 80x24, from the first screen there, press KEYS[s.name] and find the evidence."""
    from textual.widgets import OptionList

    app = pilot.app
    await pilot.resize_terminal(80, 24)
    text = await wait_screen(pilot, lambda t: names(s, t), f"{s.name}: named at 80x24")
    keys = KEYS[s.name]
    await pilot.press(*keys)
    if s.name == "flood":
        text = await wait_screen(pilot, lambda t: bool(rates(flow_rows(t)[:1])), "flow rates at 80x24")
        assert flows_at_top(app)
        assert flood_row(lab).search(flow_rows(text)[0]), text
    elif s.name == "latency":
        olist = app.query_one("#canary-exemplars", OptionList)
        assert app.focused is olist and olist.highlighted == 0
        text = await wait_screen(pilot, lambda t: "trace " in t, "slow trace ids at 80x24")
        slow = [int(ms) for ms in re.findall(r"trace [0-9a-f]{32}\s+(\d+) ms", text)]
        assert slow and slow[0] >= 300, text
    elif s.name == "errors":
        await wait_screen(pilot, lambda t: bool(re.search(r"5xx ratio .*fail", t)), "the 5xx row at 80x24")
    elif s.name == "stable-down":
        # the canary's evaluation lost its baseline (the rollout's line is below, at 160x48)
        await wait_screen(pilot, lambda t: "no stable p99 to compare with" in t, "no stable at 80x24")
    elif s.name == "cpu":
        await follow_into_profiles(pilot)


async def follow_into_profiles(pilot) -> None:
    """After `3 x enter`: Profiles has the focus, following the slowest trace, and the
    samples it shows (that request's, or the canary's when the request is older than the
    profiles kept, as its title says) hold the canary's hot path."""
    from textual.widgets import Static

    from ebpftop.tui.panes.profiles.pane import ProfilesPane

    app = pilot.app
    profiles = app.query_one(ProfilesPane)
    assert app.focused is profiles, "enter on the slowest trace id follows it into Profiles"

    def hot() -> bool:
        view = profiles.view
        return view is not None and any("main.cpuHeavyPath" in st.frames for st in view.stacks)

    end = time.monotonic() + SCREEN_S
    while not hot() and time.monotonic() < end:
        await pilot.pause(0.2)
    assert hot(), str(app.query_one("#profiles-title", Static).render())
    assert profiles.trace is not None
    await wait_screen(
        pilot, lambda t: f"trace_id={profiles.trace.trace_id}" in t, "the followed trace on screen"
    )
