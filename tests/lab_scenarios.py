"""Incident scenarios in the lab, shared by tests/test_lab_scenarios.py (what the first
screen says, how many keys reach the evidence) and bench/triage_bench.py (how soon the
header names it): how each fault is set up and undone, when it counts as under way,
and how its name reads on the screen.

Each scenario is a real fault of the lab (`ebpftop lab inject ...`, lab/knobs.py and
lab/faults.py) on its own lab instance; every wait is a poll with a bound.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ebpftop.cli.main import main as cli_main
from ebpftop.lab import manager
from ebpftop.lab.haproxy import RuntimeAPI
from ebpftop.lab.layout import LabConfig, Layout

CFG = LabConfig(name="sc", subnet="198.18.230.0/24", prometheus_port=19230, rate=40, weights=(50, 50))
UNDER_WAY_S = 30.0
"""How long a fault runs before the dashboard opens, once it is visible at its source
(Prometheus has a verdict's persistence window of history by then: 3 x 5 s)."""
DEADLINE_S = 180.0
FLOOD_BPS = 2_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    """The incident in the on-call engineer's words."""
    inject: tuple[tuple[str, ...], ...]
    """`ebpftop lab inject` arguments, one fault per tuple."""
    undo: tuple[tuple[str, ...], ...]
    named: str
    """A regex the header (its lines joined) matches once it names the incident."""
    sign: str
    """`canary`: the canary verdict fails; `server`: HAProxy stopped the stable; `flood`:
    the stable's link carries the flood. What makes the fault count as under way."""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "latency",
            "canary latency regression: every canary request 300 ms slower",
            (("canary", "latency=300ms"),),
            (("canary", "reset"),),
            r"✖ canary FAIL checkout: .*p99 [\d.]+x stable",
            "canary",
        ),
        Scenario(
            "errors",
            "canary 5xx spike: 20% of the canary's answers are 500",
            (("canary", "errors=20%"),),
            (("canary", "reset"),),
            r"✖ canary FAIL checkout: .*5xx [\d.]+%",
            "canary",
        ),
        Scenario(
            "cpu",
            "canary CPU regression: the canary's slow requests burn ~50 ms in main.cpuHeavyPath",
            (("canary", "cpu=on"),),
            (("canary", "reset"),),
            r"✖ canary FAIL checkout: .*p99 [\d.]+x stable",
            "canary",
        ),
        Scenario(
            "stable-down",
            "stable backend down: its process is gone, HAProxy's health checks fail",
            (("stable", "down"),),
            (("stable", "up"),),
            r"✖ checkout stable down: haproxy server stable stopped",
            "server",
        ),
        Scenario(
            "flood",
            "noisy neighbour: 2 MB/s of UDP from the client's namespace onto the stable's link",
            (("flood", f"rate={FLOOD_BPS // 1000}KB/s"),),
            (("flood", "off"),),
            # No alarm names a flood: its evidence is the Flows pane's first row (a UDP
            # flow to the stable's discard port); the header shows the host's net rate.
            r"net ↓[\d.]+ MiB/s",
            "flood",
        ),
    )
}
ISSUE = Scenario(
    "issue-19",
    "the issue's measurement: canary latency=300ms errors=5% cpu=on, 60 s under way",
    (("canary", "latency=300ms", "errors=5%", "cpu=on"),),
    (("canary", "reset"),),
    r"✖ canary FAIL checkout: ",
    "canary",
)


def inject(*args: str) -> None:
    code = cli_main(["lab", "inject", "--instance", CFG.name, *args])
    assert code == 0, f"lab inject {' '.join(args)}: exit {code}"


def clear() -> None:
    """Every fault off (a scenario left half set up by a failure included)."""
    inject("canary", "reset")
    inject("stable", "up")
    inject("flood", "off")


# -- reading the screen (a terminal's text: a pty's or Textual's export) -------------


def header(text: str) -> str:
    """The header's lines, joined: everything above the first pane's top border."""
    lines: list[str] = []
    for line in text.split("\n"):
        if "╭" in line:
            break
        lines.append(line.strip())
    return " ".join(lines)


def names(scenario: Scenario, text: str) -> bool:
    return re.search(scenario.named, header(text)) is not None


def pane(text: str, title: str) -> list[str]:
    """The inside of the box titled `title` (" 1 Flows "): the columns between its
    corners, the lines down to its bottom border."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        at = line.find(f" {title} ")
        if at < 0 or "╭" not in line[:at]:
            continue
        left, right = line.rfind("╭", 0, at), line.find("╮", at)
        inside = []
        for below in lines[i + 1 :]:
            part = below[left + 1 : right]
            if below[left : left + 1] == "╰":
                break
            inside.append(part)
        return inside
    return []


_FLOWS_HEAD = re.compile(r"(B/s|bytes/s)▼")


def flow_rows(text: str) -> list[str]:
    """The Flows table's rows on screen, top first (below its column header)."""
    inside = pane(text, "1 Flows")
    for i, line in enumerate(inside):
        if _FLOWS_HEAD.search(line):
            rows = []
            for row in inside[i + 1 :]:
                if not row.strip() or row.startswith(" latest TCP events"):
                    break
                rows.append(row.strip().rstrip("▐").strip())
            return rows
    return []


def flood_row(layout: Layout) -> re.Pattern[str]:
    """The flood's flow as a Flows row shows it (either direction's text)."""
    return re.compile(rf"^udp .*({re.escape(layout.addr('stable'))}:9\s|:9 ← )")


# -- under way: the fault is visible where it starts ---------------------------------


def under_way(
    scenario: Scenario, since: float, say: Callable[[str], None] = print, run_s: float = UNDER_WAY_S
) -> None:
    """Wait (bounded) until the fault shows at its source, then until it has run `run_s`
    since `since`: the dashboard must open into an incident already under way."""
    layout = Layout(CFG)
    check = {"canary": canary_fails, "server": stable_stopped, "flood": flood_flows}[scenario.sign]
    poll(lambda: check(layout), f"{scenario.name}: the fault shows at its source")
    left = since + run_s - time.monotonic()
    if left > 0:
        say(f"{scenario.name}: under way; {left:.0f} s more before the dashboard opens")
        time.sleep(left)


def recovered(layout: Layout) -> bool:
    """Both servers up and the canary verdict passing again (from history too: the
    next scenario's first screen must not name this one)."""
    servers = {s.name: s.op_state for s in RuntimeAPI(layout.haproxy_socket).servers_state()}
    return servers == {"stable": "running", "canary": "running"} and _verdict(layout) == "pass"


def canary_fails(layout: Layout) -> bool:
    return _verdict(layout) == "fail"


def stable_stopped(layout: Layout) -> bool:
    return any(
        s.name == "stable" and s.op_state == "stopped"
        for s in RuntimeAPI(layout.haproxy_socket).servers_state()
    )


def flood_flows(layout: Layout) -> bool:
    """The stable's link carries at least half the flood's rate."""
    path = f"/sys/class/net/{layout.veth('stable')}/statistics/tx_bytes"

    def read() -> int:
        with open(path) as f:
            return int(f.read())

    before = read()
    time.sleep(1.0)
    return read() - before >= FLOOD_BPS / 2


def _verdict(layout: Layout) -> str:
    """The canary verdict a fresh evaluation gives (history included), as the
    dashboard's would at its start."""
    import asyncio

    from ebpftop.collectors.canary.collector import CanaryCollector
    from ebpftop.core.settings import Settings

    async def one() -> str:
        ep = manager.endpoints(CFG)
        assert ep is not None
        c = CanaryCollector(manager.wire_settings(Settings(canary_timeout=10.0), ep))
        await c.start()
        try:
            services = (await c.collect()).services
            return services[0].verdict.value if services else ""
        finally:
            await c.close()

    return asyncio.run(one())


def poll(ok: Callable[[], bool], what: str, seconds: float = DEADLINE_S) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ok():
            return
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {seconds:g} s")
