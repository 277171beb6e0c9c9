"""The header tells the whole story: a failing canary with every breach, at 80 and at
160 columns, on a second line when one is too short, wrapped between words, and an
ellipsis when even two lines are not enough."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from app_support import (
    NOW,
    assert_nothing_raw_reaches_the_terminal,
    make_app,
    ok,
    screen_text,
    snap,
    terminal_bytes,
)

from ebpftop.collectors.canary.data import CanaryData, DriftTest, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.verdict import Evaluator, Measured, Thresholds
from ebpftop.collectors.rollout.model import RolloutData, RolloutState, rollout_alarms
from ebpftop.core.alarms import Alarm
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.stream import AGENT_SOURCE, AgentLink
from ebpftop.tui.panes.header import HostHeader, problem_lines

BREACHES = "p99 1.5 s, 22.8x stable, 5xx 5.1% (3/3, 2 from history)"


def failing(name: str = "checkout") -> ServiceCanary:
    """p99, its ratio to stable and the 5xx ratio all fail, judged by the real evaluator."""
    ev = Evaluator(Thresholds(persist=3))
    bad = Measured(1.5, 0.0658, 0.051, 1000.0, None, "no histogram")
    ev.evaluate(bad, history_at=NOW - 11)
    ev.evaluate(bad, history_at=NOW - 6)
    a = ev.evaluate(bad)
    return ServiceCanary(
        name,
        a.verdict,
        a.reason,
        a.metrics,
        VariantMetrics("canary", 1.5, 0.051, 10.0),
        VariantMetrics("stable", 0.0658, 0.0, 90.0),
        DriftTest("chi-square test of homogeneity", note="no histogram"),
        evaluated_at=NOW - 1,
    )


def words(lines) -> list[str]:
    return " ".join(line.plain for line in lines).split()


CANARY = Alarm("canary", "error", f"canary FAIL checkout: {BREACHES}", "canary_verdict")
DOWN = {"flows": Health(HealthState.DOWN, "cannot attach the TC program to eth0: operation not permitted")}


def test_what_fits_stays_on_one_line():
    (line,) = problem_lines(DOWN, (), (CANARY,), 158)
    assert line.plain.startswith(f"✖ canary FAIL checkout: {BREACHES}  ")


def test_all_sources_ok_gives_way_to_an_alarm_rather_than_take_a_line():
    ok_health = {"flows": Health(), "rules": Health()}
    (wide,) = problem_lines(ok_health, (), (CANARY,), 158)
    assert wide.plain.endswith("● all sources OK")
    (narrow,) = problem_lines(ok_health, (), (CANARY,), 84)
    assert narrow.plain == f"✖ canary FAIL checkout: {BREACHES}"


@pytest.mark.parametrize("width", [78, 60, 45])
def test_a_second_line_wraps_between_words(width):
    whole = problem_lines(DOWN, (), (CANARY,))[0]
    lines = problem_lines(DOWN, (), (CANARY,), width)
    assert len(lines) == 2
    assert all(line.cell_length <= width for line in lines)
    shown = words(lines)
    if shown[-1] == "…":  # did not fit in two: a whole-word prefix, then the ellipsis
        assert shown[:-1] == whole.plain.split()[: len(shown) - 1]
    else:
        assert shown == whole.plain.split()


def test_a_mark_never_ends_a_line_apart_from_what_it_marks():
    back = Alarm("rollout", "warning", "checkout rolled back 07:09:47", "rolled_back")
    for width in range(30, 100):
        for line in problem_lines(DOWN, ("flows",), (CANARY, back), width):
            words = line.plain.removesuffix(" …").split()  # the ellipsis: more follows
            assert words[-1].isalnum() or len(words[-1]) > 1, (width, line.plain)
            assert line.cell_length <= width


def test_what_two_lines_cannot_hold_ends_in_an_ellipsis():
    many = {f"source{i}": Health(HealthState.DEGRADED, "a long message " * 5) for i in range(6)}
    lines = problem_lines(many, (), (CANARY,), 60)
    assert len(lines) == 2 and lines[-1].plain.endswith(" …")
    assert all(line.cell_length <= 60 for line in lines)
    full = problem_lines(many, (), (CANARY,))[0].plain.split()
    assert words(lines)[:-1] == full[: len(words(lines)) - 1]  # no word cut


def test_a_word_longer_than_the_line_is_cut_with_the_ellipsis():
    long = Alarm("canary", "error", "canary FAIL " + "x" * 200, "canary_verdict")
    lines = problem_lines({}, (), (long,), 40)
    assert len(lines) == 2 and lines[-1].plain.endswith("…") and lines[-1].cell_length <= 40


async def header_after(app, pilot, *snaps) -> tuple[list[str], int]:
    """The header's rows on screen once `snaps` are published, and its height."""
    for s in snaps:
        app.runtime.bus.publish(s)
    await pilot.pause()
    await pilot.pause()
    height = app.query_one(HostHeader).size.height
    return screen_text(app).splitlines()[:height], height


def canary_failing():
    return snap("canary", CanaryData("http://p", (failing(),)), ok(NOW - 1), t=NOW - 1)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_the_header_names_every_breach_without_a_keypress(tmp_path, size):
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        rows, height = await header_after(app, pilot, canary_failing())
        told = " ".join(" ".join(rows).split())
        assert f"✖ canary FAIL checkout: {BREACHES}" in told
        assert not any(row.rstrip().endswith("…") for row in rows)  # nothing cut
        # 80 columns need the second line; 160 do not
        assert height == (4 if size[0] == 80 else 3)


def rolled_back(phase: str = "rolled back", **kw) -> RolloutState:
    return RolloutState(
        "checkout", "haproxy", "/run/haproxy.sock", "stable", "canary", 100.0, 0.0, phase, **kw
    )


def hhmmss(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def test_a_canary_rolled_back_is_said_with_since_when():
    def said(*states: RolloutState) -> list[tuple[str, str]]:
        found = rollout_alarms(snap("rollout", RolloutData(states), ok(NOW), t=NOW), ())
        return [(a.kind, a.text) for a in found]

    # by the controller's own word (HAProxy's phase, Argo's abort), since its last change
    assert said(rolled_back(last_change=NOW - 300)) == [
        ("rolled_back", f"checkout rolled back {hhmmss(NOW - 300)}")
    ]
    assert said(rolled_back("Degraded (aborted)")) == [("rolled_back", "checkout rolled back")]
    # by ebpftop, remembered: its own time
    assert said(rolled_back("", rolled_back_at=NOW - 60)) == [
        ("rolled_back", f"checkout rolled back {hhmmss(NOW - 60)}")
    ]
    # a rollback undone by a reload is that alarm, not this one
    reverted = replace(
        rolled_back("progressing", rolled_back_at=NOW - 60, reverted_since=NOW - 5), canary_weight=10.0
    )
    assert [kind for kind, _ in said(reverted)] == ["rollback_reverted"]
    assert said(replace(rolled_back("progressing"), canary_weight=10.0)) == []


async def test_the_header_says_rolled_back_beside_the_verdict(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        rollout = snap("rollout", RolloutData((rolled_back(last_change=NOW - 90),)), ok(NOW - 1), t=NOW - 1)
        rows, _ = await header_after(app, pilot, canary_failing(), rollout)
        told = " ".join(" ".join(rows).split())
        assert f"✖ canary FAIL checkout: {BREACHES}" in told
        assert f"↩ checkout rolled back {hhmmss(NOW - 90)}" in told


# --- the node's name before its first host sample ------------------------------------


def test_the_title_names_the_node_before_its_first_host_sample():
    from ebpftop.tui.panes.header import Marks, title_line

    assert "node-7" in title_line(Marks(node="node-7"), None).plain
    hostile = title_line(Marks(node="[b]x[/b]\x1b]0;t\x07\nn"), None)
    assert "\x1b" not in hostile.plain and "\n" not in hostile.plain and "[b]x[/b]" in hostile.plain
    # the host sample's name wins once it arrives (it is what the sample was taken on)
    from ebpftop.core.model import HostData

    host = HostData(
        hostname="from-sample", kernel="6.1", uptime_s=60, cpu_percent=1.0, cpu_count=2,
        load=(0.1, 0.1, 0.1), mem_total=2, mem_used=1, mem_percent=10.0, net_rx_bps=0.0, net_tx_bps=0.0,
    )  # fmt: skip
    line = title_line(Marks(node="node-7"), host).plain
    assert "from-sample" in line and "node-7" not in line


def test_a_live_host_collector_names_this_machine_a_recording_its_own_node(tmp_path):
    import socket

    from ebpftop.collectors.host import HostCollector
    from ebpftop.core.record import header
    from ebpftop.core.replay import Recording, ReplayRuntime
    from ebpftop.core.runtime import Runtime
    from ebpftop.core.settings import Settings

    s = Settings(audit_log=str(tmp_path / "a.jsonl"), audit_key=str(tmp_path / "a.key"))
    assert Runtime(s, collectors=[HostCollector()]).node_name == socket.gethostname()
    assert Runtime(s, collectors=[]).node_name is None  # nothing watches a node: say nothing
    recorded = Recording([], None, [header(1700000000.0, "db-3")])
    assert ReplayRuntime(s, recorded).node_name == "db-3"
    assert ReplayRuntime(s, Recording([], None, [])).node_name is None


# --- the agent a viewer reads --------------------------------------------------------


def agent_link(state: str = "up", seq: int = 1, **kw) -> Snapshot:
    """The viewer's `agent` source as core/stream_client.py publishes it."""
    link = AgentLink(state, "/run/ebpftop/agent.sock", **kw)  # type: ignore[arg-type]
    down = Health(HealthState.DOWN, "the connection closed; reconnecting", "", None, 1)
    return snap(AGENT_SOURCE, link, ok(NOW - 1) if state == "up" else down, seq=seq, t=NOW - 1)


async def test_the_header_says_which_agent_it_views_what_it_dropped_and_when_it_is_down(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        rows, _ = await header_after(app, pilot, agent_link(host="node-a"))
        assert "via agent node-a" in rows[0] and "dropped" not in rows[0], rows[0]
        rows, _ = await header_after(app, pilot, agent_link(host="node-a", drops=7, seq=2))
        assert "via agent node-a 7 dropped" in rows[0], rows[0]
        rows, _ = await header_after(app, pilot, agent_link("down", host="node-a", drops=7, seq=3))
        assert "AGENT DOWN" in rows[0], rows[0]
        assert "via agent" not in rows[0] and "dropped" not in rows[0], rows[0]
        # the agent's host name is its own word: markup shown as typed, controls as escapes
        rows, _ = await header_after(app, pilot, agent_link(host="[b]x[/b]\x1b]0;t\x07", seq=4))
        assert "via agent [b]x[/b]\\x1b]0;t\\x07" in rows[0], rows[0]
        assert "AGENT DOWN" not in rows[0]
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
