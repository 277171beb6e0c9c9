"""The fleet view (`ebpftop --fleet URL`): ranking, filter, collector and pane against a
real Prometheus holding exact, backfilled agent series (tests/promtools.py), and the
command line's refusals. The live path (real agents in the lab, scraped by the lab's
Prometheus) is tests/test_lab_fleet.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from promtools import prometheus

from ebpftop.collectors.fleet import filter as ff
from ebpftop.collectors.fleet.collector import FleetCollector
from ebpftop.collectors.fleet.model import FleetData, FleetNode, fleet_alarms
from ebpftop.collectors.fleet.rank import rank
from ebpftop.core.collector import CollectorRunner
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.settings import Settings

STEP, STEPS = 5, 120  # ten minutes of samples
T0 = 1_700_000_000
AT = T0 + STEP * STEPS - 2  # the evaluation time: inside the data
OWNER = ("service", "namespace", "pod", "unit", "comm")

# node label ("" none), instance, up
NODES = (
    ("[b]node1[/b]", "h1:9464", 1),
    ("node2", "h2:9464", 1),
    ("n3;$(id)", "h3:9464", 1),
    ("", "h4:9464", 0),
)
# per node: flow bytes/s (checkout, cart), retransmits/s (checkout), canary fail
RATES = {
    "h1:9464": (100_000, 0, 0.1, 1),
    "h2:9464": (100_000, 0, 20.0, 0),
    "h3:9464": (100_000, 10_000_000, 0.1, 0),
    "h4:9464": (100_000, 0, 0.1, 0),
}


def _labels(node: str, instance: str, **extra: str) -> str:
    base = {"job": "ebpftop", "instance": instance, **({"node": node} if node else {}), **extra}
    return ",".join(f'{k}="{v}"' for k, v in base.items())


def _owner(service: str) -> dict[str, str]:
    return {"service": service, "namespace": "shop", "pod": f"{service}-1", "unit": "", "comm": ""}


def openmetrics() -> str:
    fams: dict[str, list[str]] = {
        "ebpftop_build_info gauge": [],
        "up gauge": [],
        "ebpftop_flow_bytes counter": [],
        "ebpftop_tcp_retransmits counter": [],
        "ebpftop_canary_verdict gauge": [],
        "ebpftop_source_state gauge": [],
    }
    # node 3's rules source is down; node 2's profiles are off (not configured: no fault)
    states = {"h3:9464": ("rules", "down"), "h2:9464": ("profiles", "off")}
    for node, instance, up in NODES:
        checkout, cart, retrans, fail = RATES[instance]
        for k in range(STEPS + 1):
            t = T0 + k * STEP
            fams["ebpftop_build_info gauge"].append(
                f"ebpftop_build_info{{{_labels(node, instance, version='1.2.3')}}} 1 {t}"
            )
            fams["up gauge"].append(f"up{{{_labels(node, instance)}}} {up} {t}")
            for svc, rate in (("checkout", checkout), ("cart", cart)):
                lab = _labels(node, instance, direction="receive", proto="tcp", **_owner(svc))
                fams["ebpftop_flow_bytes counter"].append(
                    f"ebpftop_flow_bytes_total{{{lab}}} {rate * STEP * k} {t}"
                )
            lab = _labels(node, instance, **_owner("checkout"))
            fams["ebpftop_tcp_retransmits counter"].append(
                f"ebpftop_tcp_retransmits_total{{{lab}}} {retrans * STEP * k:.1f} {t}"
            )
            if instance in states:
                source, now = states[instance]
                for state in ("ok", "degraded", "down", "off"):
                    lab = _labels(node, instance, source=source, state=state)
                    fams["ebpftop_source_state gauge"].append(
                        f"ebpftop_source_state{{{lab}}} {int(state == now)} {t}"
                    )
            for verdict in ("pass", "fail"):
                v = int((verdict == "fail") == bool(fail))
                lab = _labels(node, instance, service="checkout", verdict=verdict)
                fams["ebpftop_canary_verdict gauge"].append(f"ebpftop_canary_verdict{{{lab}}} {v} {t}")
    out = []
    for head, lines in fams.items():
        name, kind = head.split()
        out.append(f"# TYPE {name} {kind}")
        out += lines
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    with prometheus(tmp_path_factory.mktemp("fleet"), openmetrics=openmetrics()) as p:
        yield p


def settings(url: str, **kw: object) -> Settings:
    return Settings(fleet_url=url, fleet_timeout=10.0, **kw)  # type: ignore[arg-type]


def collect(url: str, flt: str = "", **kw: object) -> FleetData:
    async def go() -> FleetData:
        c = FleetCollector(settings(url, **kw), clock=lambda: AT)
        if flt:
            c.set_filter(ff.parse(flt))
        await c.start()
        try:
            return await c.collect()
        finally:
            await c.close()

    return asyncio.run(go())


# --- ranking, without Prometheus ---------------------------------------------------------


def node(name: str, **kw: object) -> FleetNode:
    return FleetNode(name=name, instance=f"{name}:9464", up=True, **kw)  # type: ignore[arg-type]


def test_rank_agent_down_then_canary_then_the_biggest_outlier_then_names():
    nodes = [
        node("a", retransmits_ps=0.2, traffic_bps=1e5),
        node("b", retransmits_ps=30.0, traffic_bps=1e5),
        node("c", retransmits_ps=0.1, traffic_bps=1e5, failing_canaries=("checkout",)),
        FleetNode("d", "d:9464", up=False),
        node("e", retransmits_ps=0.3, traffic_bps=9e6),
        node("f", retransmits_ps=0.1, traffic_bps=1e5),
    ]
    ranked = rank(nodes)
    # b: 200x the others' median retransmits; e: 90x their traffic
    assert [n.name for n in ranked] == ["d", "c", "b", "e", "a", "f"]
    by = {n.name: n for n in ranked}
    assert by["d"].reasons == ("agent down (Prometheus cannot scrape it)",)
    assert by["c"].reasons == ("canary FAIL: checkout",)
    assert by["b"].reasons == ("retransmits 30/s (others 0.15/s)",)  # median of a, c, e, f
    assert by["e"].reasons[0].startswith("traffic 8.58 MiB/s (others 97.7 KiB/s)")
    assert by["a"].reasons == by["f"].reasons == ()


def test_rank_floors_keep_noise_out_and_two_nodes_compare_with_each_other():
    # 0.09 against 0.01 retransmits/s is 9x, but below the floor of 0.1/s: nobody's incident
    quiet = rank(
        [node("a", retransmits_ps=0.09), node("b", retransmits_ps=0.01), node("c", retransmits_ps=0.01)]
    )
    assert all(not n.reasons for n in quiet) and [n.name for n in quiet] == ["a", "b", "c"]
    two = rank([node("a", connect_p99_s=0.002), node("b", connect_p99_s=0.250)])
    assert two[0].name == "b" and two[0].reasons == ("connect p99 250 ms (others 2 ms)",)
    # a quiet fleet (median 0): a symptom seconds old, diluted by the rate window, stands out
    fresh = rank(
        [node("a", retransmits_ps=0.0), node("b", retransmits_ps=0.17), node("c", retransmits_ps=0.0)]
    )
    assert fresh[0].name == "b" and fresh[0].reasons == ("retransmits 0.17/s (others 0/s)",)
    # no data is not zero: a node without the column is not compared on it
    assert not rank([node("a", retransmits_ps=None), node("b", retransmits_ps=5.0)])[0].reasons


def test_alarms_name_the_worst_nodes_severe_first():
    ranked = rank(
        [FleetNode("d", "d:1", up=False), node("b", retransmits_ps=30.0), node("a", retransmits_ps=0.1)]
    )
    data = FleetData("http://p", "1m", "", ranked)
    alarms = fleet_alarms(Snapshot("fleet", 1, 0.0, Health(HealthState.OK), data), [])
    assert [(a.severity, a.text) for a in alarms] == [
        ("error", "d: agent down (Prometheus cannot scrape it)"),
        ("warning", "b: retransmits 30/s (others 0.1/s)"),
    ]


# --- the filter ----------------------------------------------------------------------------


def test_filter_terms_become_quoted_matchers():
    f = ff.parse('service:check"out pod:web-* namespace:a\\b')
    assert f.text == 'service:check"out pod:web-* namespace:a\\b'
    # PromQL strings escape the regex's backslash too: the regex is web\-.*
    assert f.matchers() == '{service="check\\"out",pod=~"web\\\\-.*",namespace="a\\\\b"}'
    assert f.matchers(only=("service",)) == '{service="check\\"out"}'
    assert ff.parse("").matchers() == ""


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("host:a", "'host:a' is not a filter term"),
        ("service:", "'service:' has no value"),
        ("service", "'service' is not a filter term"),
        ("pod:a pod:b", "pod is given twice"),
        ("pod:a\x1b[2J", "must be printable"),
    ],
)
def test_filter_refuses_bad_terms_naming_them(text, says):
    with pytest.raises(ff.FilterError, match=None) as exc:
        ff.parse(text)
    assert says in str(exc.value)


# --- the collector on a real Prometheus ----------------------------------------------------


def test_collector_ranks_the_fleet_from_prometheus(prom):
    data = collect(prom.url)
    names = [n.name for n in data.nodes]
    # the agent Prometheus cannot scrape, the failing canary, the 100x traffic, the retransmits
    assert names == ["h4:9464", "[b]node1[/b]", "n3;$(id)", "node2"], names
    by = {n.name: n for n in data.nodes}
    assert by["h4:9464"].up is False and by["h4:9464"].instance == "h4:9464"
    assert by["[b]node1[/b]"].failing_canaries == ("checkout",)
    assert by["n3;$(id)"].traffic_bps == pytest.approx(10_100_000, rel=0.01)
    assert by["node2"].retransmits_ps == pytest.approx(20.0, rel=0.01)
    assert by["node2"].reasons == ("retransmits 20/s (others 0.1/s)",)
    assert by["node2"].sources_down == () and by["n3;$(id)"].sources_down == ("rules",)
    assert by["n3;$(id)"].reasons[0] == "agent source down: rules"
    assert by["node2"].version == "1.2.3" and data.window == "1m" and data.filter == ""
    assert dict(data.medians)["traffic_bps"] == pytest.approx(100_000, rel=0.01)
    assert not data.failed


def test_the_filter_narrows_the_flow_columns(prom):
    data = collect(prom.url, "service:checkout")
    by = {n.name: n for n in data.nodes}
    assert data.filter == "service:checkout"
    # the cart flood is not checkout's: node 3 is one of the crowd again (its rules source
    # is still down: the node's, whatever the filter)
    assert by["n3;$(id)"].traffic_bps == pytest.approx(100_000, rel=0.01)
    assert by["n3;$(id)"].reasons == ("agent source down: rules",)
    # a glob, and a value nothing has: columns empty (no data), not zero
    assert collect(prom.url, "pod:cart-*").nodes[0].retransmits_ps is None
    nobody = {n.name: n for n in collect(prom.url, "namespace:nope").nodes}
    assert nobody["node2"].traffic_bps is None and nobody["node2"].up is True


def test_a_prometheus_that_does_not_answer_takes_the_source_down_with_its_reason(tmp_path):
    from promtools import free_port

    url = f"http://127.0.0.1:{free_port()}"

    async def go() -> Snapshot:
        from ebpftop.core.bus import Bus

        bus, got = Bus(), []
        bus.subscribe(got.append)
        runner = CollectorRunner(FleetCollector(settings(url)), bus)
        await runner.collector.start()
        try:
            await runner.run_once()
        finally:
            await runner.collector.close()
        return got[-1]

    snap = asyncio.run(go())
    assert snap.health.state is HealthState.DOWN
    assert f"Prometheus {url}: cannot connect: Connection refused" in snap.health.message


# --- the command line ------------------------------------------------------------------------


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "empty.toml"
    config.write_text("")
    config.chmod(0o600)
    return subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--fleet",), "--fleet: no Prometheus URL"),
        (("--fleet", "ftp://x"), "must be an http:// or https:// URL"),
        (("--fleet", "http://127.0.0.1:1", "--fleet-filter", "host:x"), "'host:x' is not a filter term"),
    ],
)
def test_cli_refuses_bad_fleet_input_before_anything_starts(tmp_path, args, says):
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2, proc
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# --- the view, at 80x24, over the same Prometheus ------------------------------------------


async def _wait_for(pilot, cond, tries: int = 200) -> bool:
    for _ in range(tries):
        if cond():
            return True
        await pilot.pause(0.05)
    return cond()


async def test_the_fleet_view_at_80x24_worst_first_enter_reaches_the_node_filter_and_sort(prom, tmp_path):
    from app_support import screen_text
    from app_support import settings as app_settings

    from ebpftop.core.runtime import Runtime
    from ebpftop.tui.fleet_app import FleetApp
    from ebpftop.tui.panes.fleet.detail import FleetNodeScreen
    from ebpftop.tui.panes.fleet.pane import FleetPane
    from ebpftop.tui.screens.prompt import PromptScreen

    s = app_settings(
        tmp_path, fleet_url=prom.url, fleet_timeout=10.0, fleet_interval=0.5, fleet_ssh_template="ssh {node}"
    )
    collector = FleetCollector(s, clock=lambda: AT)
    app = FleetApp(Runtime(s, [collector]))
    app.redraw_every = 0.0
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        pane = app.query_one(FleetPane)
        assert await _wait_for(pilot, lambda: len(pane.rows) == 4), screen_text(app)
        text = screen_text(app)
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if "h4:9464" in line and "DOWN" in line)
        # worst first, on the first screen: the agent that is down, then the failing canary
        assert "DOWN" in lines[first] and "[b]node1[/b]" in lines[first + 1], text
        assert "4 nodes" in text and "4 need a look" in text and "1 agent down" in text, text
        # the header names the worst without a keypress
        assert "h4:9464: agent down" in "\n".join(lines[:4]), text

        # Enter on the selected (top) node; then the one with a hostile name, quoted for a shell
        await pilot.press("down", "down", "enter")
        assert isinstance(app.screen, FleetNodeScreen)
        detail = app.screen.text()
        assert "ssh 'n3;$(id)'" in detail and "traffic" in detail and "fleet median" in detail, detail
        assert "ebpftop --connect h3:9465" in detail, detail
        await pilot.press("escape")

        # s: sort by the next column (traffic), marked in the header
        await pilot.press("s")
        assert "traffic▼" in screen_text(app) and pane.rows[0].name == "n3;$(id)"

        # a bad filter changes nothing and says why; a good one narrows the flow columns
        await pilot.press("slash")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"host:x", "enter")
        assert await _wait_for(pilot, lambda: "filter unchanged" in screen_text(app)), screen_text(app)
        assert collector.filter.text == ""
        await pilot.press("slash")
        await pilot.press(*"service:checkout", "enter")
        assert collector.filter.text == "service:checkout"
        assert await _wait_for(
            pilot, lambda: pane.data is not None and pane.data.filter == "service:checkout"
        ), screen_text(app)
        assert "filter service:checkout" in screen_text(app)
        # under the filter the cart flood is gone: traffic no longer puts node 3 on top
        assert pane.rows[0].name != "n3;$(id)"

        # help lists the fleet's keys and none of the node dashboard's actions
        from ebpftop.tui.screens.help import help_rows

        keys = {k.strip() for k, _, _ in help_rows(app)}
        assert {"s", "/", "enter", "?", "q"} <= keys and not keys & {"R", "U", "m", "1", "2"}, keys


def test_a_recording_of_the_fleet_view_replays_in_the_fleet_view(prom, tmp_path):
    """`ebpftop --fleet URL --record F`, then `ebpftop replay F`: the fleet pane, not the
    node's four panes, in a real terminal; labels stay literal."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from pty_app import PtyApp

    from ebpftop.core.record import Recorder

    data = collect(prom.url)
    path = tmp_path / "fleet.rec"
    rec = Recorder(str(path), 1 << 20, host="laptop", clock=lambda: float(AT))
    assert rec.open(), rec.status
    for seq in range(1, 4):
        rec(Snapshot("fleet", seq, float(AT + seq), Health(HealthState.OK, last_ok=float(AT + seq)), data))
    rec.close()
    app = PtyApp([sys.executable, "-m", "ebpftop.cli.main", "replay", str(path)], cols=100, rows=30)
    try:
        assert app.wait_for(lambda t: "1 Fleet" in t and "[b]node1[/b]" in t, 60) is not None, app.text()
        text = app.text()
        assert "2 Rules" not in text and "agent down" in text, text
    finally:
        app.close()
