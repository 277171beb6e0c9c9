"""Who owns a flow or a sample, on screen (Pilot, no root; synthetic payloads): the
Flows pane names the peer's process and where each owner runs (a column when the pane
is wide, the process cell otherwise, without pushing out the flow), groups and filters
by pod, namespace, workload, unit, container and netns (a flow matches on either end,
and counts in one group only), and its detail shows both ends' whole identity. The
Profiles pane: a where column, `g` by the identity tags, the detail's processes.
Hostile identity strings are shown literally everywhere."""

from __future__ import annotations

from dataclasses import replace

import pytest
from app_support import NOW, make_app, ok, screen_text, snap, terminal_bytes
from test_app_hostile import HOSTILE, MARKUP, assert_nothing_raw_reaches_the_terminal
from test_flows_pane import flow
from test_flows_pane import flows_data as base_data
from textual.widgets import Input, Static

from ebpftop.collectors.flows import filter as flt
from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.flows.view import group_flows
from ebpftop.collectors.identity.model import Identity
from ebpftop.collectors.profiles.aggregate import summarize
from ebpftop.collectors.profiles.model import ProfilesData, StackSample, make_tags
from ebpftop.tui.panes.flows.detail import FlowDetailScreen
from ebpftop.tui.panes.flows.filter import FlowFilterScreen
from ebpftop.tui.panes.flows.pane import FlowsPane
from ebpftop.tui.panes.profiles.detail import ProfileDetailScreen
from ebpftop.tui.panes.profiles.pane import ProfilesPane
from ebpftop.tui.panes.table import LineTable

POD_UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CANARY_UID = "9a8b7c6d-5e4f-3a2b-1c0d-ffeeddccbbaa"

LOADGEN = Identity(4001, "loadgen", netns="lab-client", cgroup="/ebpftop-lab/client", unit="lab-client.scope")
HAPROXY = Identity(
    4002, "haproxy", service="haproxy", netns="lab-lb", cgroup="/ebpftop-lab/lb", unit="lab-lb.scope"
)
STABLE = Identity(
    4003,
    "checkout",
    service="checkout",
    version="1.4.2",
    env="prod",
    track="stable",
    netns="cni-7a1f",
    cgroup=f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID}.slice",
    container="ab" * 32,
    runtime="containerd",
    pod_uid=POD_UID,
    qos="burstable",
    pod="checkout-7d9f-x2k4p",
    namespace="shop",
    workload="Deployment/checkout",
    container_name="app",
)
CANARY = Identity(
    4004,
    "checkout",
    service="checkout",
    track="canary",
    netns="cni-9c2e",
    container="cd" * 32,
    runtime="containerd",
    pod_uid=CANARY_UID,
    qos="burstable",
    pod="checkout-canary-5b8c-q7w2e",
    namespace="shop",
    workload="Deployment/checkout-canary",
    container_name="app",
)
CURL = Identity(4005, "curl")  # the host's own namespace and cgroup: nowhere to name


def conn(src, sport, dst, dport, *, bps, pid, peer=None, comm=None, direction="egress", service=None):
    one = flow(src, sport, dst, dport, bps=bps, pps=1.0, total=int(bps * 10), direction=direction)
    return replace(one, iface="veth0", pid=pid, comm=comm, service=service, peer_pid=peer)


# loadgen -> HAProxy -> the stable and the canary pod; an outside client to the stable
# pod (no peer here); curl on the host to the world.
TO_LB = conn("198.18.240.2", 40000, "198.18.240.10", 80, bps=9000.0, pid=4001, peer=4002, comm="loadgen")
TO_STABLE = conn(
    "198.18.240.10",
    41000,
    "10.244.0.5",
    8080,
    bps=7000.0,
    pid=4002,
    peer=4003,
    comm="haproxy",
    service="haproxy",
)
TO_CANARY = conn(
    "198.18.240.10",
    41001,
    "10.244.0.6",
    8080,
    bps=5000.0,
    pid=4002,
    peer=4004,
    comm="haproxy",
    service="haproxy",
)
OUTSIDE = conn(
    "192.0.2.50",
    50000,
    "10.244.0.5",
    8080,
    bps=3000.0,
    pid=4003,
    comm="checkout",
    service="checkout",
    direction="ingress",
)
WORLD = conn("10.0.0.1", 42000, "203.0.113.9", 443, bps=1000.0, pid=4005, comm="curl")
FLOWS = (TO_LB, TO_STABLE, TO_CANARY, OUTSIDE, WORLD)
OWNERS = (LOADGEN, HAPROXY, STABLE, CANARY, CURL)


def flows_data(flows=FLOWS, owners=OWNERS) -> FlowsData:
    return base_data(flows, owners=tuple(owners), namespaces=5)


async def show(pilot, data: FlowsData, seq: int = 1) -> FlowsPane:
    pilot.app.runtime.bus.publish(snap("flows", data, ok(NOW - 1), seq=seq, t=NOW - 1))
    await pilot.pause()
    return pilot.app.query_one(FlowsPane)


def rows(app) -> list[list[str]]:
    table = app.query_one("#flows-table", LineTable)
    return [[text.strip() for text, _style in table.row(i).cells] for i in range(table.count)]


def labels(app) -> list[str]:
    return [c.label for c in app.query_one("#flows-table", LineTable).columns]


def status(app) -> str:
    return str(app.query_one("#flows-status", Static).render())


# --- the logic -----------------------------------------------------------------------


def test_identity_groups_count_each_connection_once():
    data = flows_data()
    who = data.identity
    expect = {
        # the owner's (pid's) value, else the peer's: loadgen and the two haproxy flows
        # have no pod; haproxy's flows take their peer pod's, the outside one the stable's
        "pod": {"shop/checkout-7d9f-x2k4p": 2, "shop/checkout-canary-5b8c-q7w2e": 1, "(no pod)": 2},
        "namespace": {"shop": 3, "(no namespace)": 2},
        "workload": {"Deployment/checkout": 2, "Deployment/checkout-canary": 1, "(no workload)": 2},
        "unit": {"lab-client.scope": 1, "lab-lb.scope": 2, "(no unit)": 2},
        "container": {f"containerd {'ab' * 6}": 2, f"containerd {'cd' * 6}": 1, "(no container)": 2},
        "netns": {"lab-client": 1, "lab-lb": 2, "cni-7a1f": 1, "(host)": 1},
    }
    for by, want in expect.items():
        groups = group_flows(FLOWS, by, who)
        assert {g.key: g.flows for g in groups} == want, by
        assert sum(g.flows for g in groups) == len(FLOWS)  # nothing counted twice
        assert sum(g.bytes for g in groups) == sum(f.bytes for f in FLOWS)
    # without the owners, nobody is known: one group, every flow once
    assert [(g.key, g.flows) for g in group_flows(FLOWS, "unit")] == [("(unknown process)", 5)]


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("pod:canary", [TO_CANARY]),  # the peer's pod
        ("pod:" + CANARY_UID[:8], [TO_CANARY]),  # a pod's UID
        ("pod:shop/checkout-7d9f", [TO_STABLE, OUTSIDE]),  # either end: haproxy's peer, the pod's own
        ("ns:shop", [TO_STABLE, TO_CANARY, OUTSIDE]),
        ("namespace:SHOP", [TO_STABLE, TO_CANARY, OUTSIDE]),  # alias, any case
        ("workload:checkout-canary", [TO_CANARY]),
        ("unit:lab-client", [TO_LB]),
        ("unit:lab-lb", [TO_LB, TO_STABLE, TO_CANARY]),  # the peer of loadgen's flow is HAProxy
        ("container:" + "cd" * 4, [TO_CANARY]),  # a container id prefix
        ("container:app", [TO_STABLE, TO_CANARY, OUTSIDE]),  # its name in the pod
        ("netns:cni", [TO_STABLE, TO_CANARY, OUTSIDE]),
        ("ns:shop !pod:canary", [TO_STABLE, OUTSIDE]),
        ("unit:lab-lb port:80", [TO_LB]),
        ("ns:nowhere", []),
    ],
)
def test_identity_filter_terms_match_either_end(text, matched):
    data = flows_data()
    assert flt.parse(text).apply(FLOWS, data.identity) == tuple(matched)


def test_identity_filter_terms_without_owners_match_nothing_and_others_never_look():
    assert flt.parse("ns:shop").apply(FLOWS) == ()  # no lookup given: no identity known

    def refuse(pid):
        raise AssertionError("a filter without identity terms looked an owner up")

    assert flt.parse("port:8080 proto:tcp").apply(FLOWS, refuse) == (TO_STABLE, TO_CANARY, OUTSIDE)
    with pytest.raises(flt.FilterError) as info:
        flt.parse("pods:x")
    assert "unknown field 'pods'" in str(info.value) and "pod, ns, workload, unit, container, netns" in str(
        info.value
    )
    with pytest.raises(flt.FilterError, match="unit: needs a value"):
        flt.parse("unit:")


# --- the Flows pane ------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_process_cell_names_both_ends_without_pushing_out_the_flow(tmp_path, size):
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await show(pilot, flows_data())
        # the columns of today: the where folds into the process cell at this width
        assert labels(app) == ["proto :port ⇄ remote", "B/s▼", "pkt/s", "total", "rtx", "conn", "process"]
        table = rows(app)
        # every flow cell whole, as without identities
        assert [r[0] for r in table] == [
            "tcp :40000 → 198.18.240.10:80",
            "tcp :41000 → 10.244.0.5:8080",
            "tcp :41001 → 10.244.0.6:8080",
            "tcp :8080 ← 192.0.2.50:50000",
            "tcp :42000 → 203.0.113.9:443",
        ]
        # no room for the peer beside these flows: the names, as without identities (the
        # peer is in the detail)
        assert [r[-1].split()[0] for r in table] == ["loadgen", "haproxy", "haproxy", "checkout", "curl"]
        # shorter flows leave room: the peer first (the arrow from the end that opened
        # the connection), then where the owner runs, as room allows
        lg = replace(LOADGEN, unit="lg")
        short = [
            replace(TO_LB, sport=400, dst="10.0.0.2"),
            replace(OUTSIDE, src="10.0.0.4", sport=500, dport=80),
            replace(WORLD, sport=401, dst="10.0.0.3", dport=80, pid=4001, comm="loadgen"),
        ]
        await show(pilot, flows_data(short, owners=(lg, HAPROXY, STABLE)), seq=2)
        assert [r[0] for r in rows(app)] == [
            "tcp :400 → 10.0.0.2:80",
            "tcp :80 ← 10.0.0.4:500",
            "tcp :401 → 10.0.0.3:80",
        ]
        assert [r[-1] for r in rows(app)] == ["loadgen → haproxy", "checkout [4003]", "loadgen · lg"]
        assert all(r[-1] in screen_text(app) for r in rows(app))


async def test_a_wide_pane_has_a_where_column(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(400, 40)) as pilot:  # a grid pane about 198 wide
        await show(pilot, flows_data())
        assert labels(app)[-3:] == ["process", "where", "service"]
        by_flow = {r[3]: r for r in rows(app)}
        lb = by_flow["198.18.240.2:40000 → 198.18.240.10:80"]
        assert lb[-3:] == ["loadgen → haproxy", "lab-client.scope", "—"]  # the peer before the pid
        stable = by_flow["192.0.2.50:50000 → 10.244.0.5:8080"]
        assert stable[-3:] == ["checkout [4003]", "shop/checkout-7d9f-x2k4p", "checkout"]
        assert by_flow["10.0.0.1:42000 → 203.0.113.9:443"][-2] == "—"
    app = make_app(tmp_path)
    async with app.run_test(size=(280, 40)) as pilot:  # about 138: the flow keeps its room
        await show(pilot, flows_data())
        assert "where" not in labels(app)
        first = rows(app)[0]
        assert first[2] == "198.18.240.2:40000 → 198.18.240.10:80"
        assert first[-2] == "loadgen → haproxy"  # the peer before the pid (no room for both)


async def test_g_groups_by_each_identity_key_the_owners_have(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        seen = []
        for _ in range(10):
            await pilot.press("g")
            await pilot.pause()
            seen.append(pane.grouping)
            if pane.grouping in ("pod", "namespace", "workload", "unit", "container", "netns"):
                assert f"group {pane.grouping}" in status(app)
                assert labels(app)[:2] == [pane.grouping, "flows"]
                assert sum(int(r[1]) for r in rows(app)) == len(FLOWS)  # each connection once
            if pane.grouping == "namespace":
                assert {r[0]: r[1] for r in rows(app)} == {"shop": "3", "(no namespace)": "2"}
            if pane.grouping == "unit":
                assert {r[0]: r[1] for r in rows(app)} == {
                    "lab-client.scope": "1",
                    "lab-lb.scope": "2",
                    "(no unit)": "2",
                }
        assert seen == [
            "process",
            "service",
            "remote",
            "pod",
            "namespace",
            "workload",
            "unit",
            "container",
            "netns",
            "none",
        ]
        # no Kubernetes API, no containers: those keys are not offered
        plain = [
            replace(o, pod=None, pod_uid=None, namespace=None, workload=None, container=None) for o in OWNERS
        ]
        await show(pilot, replace(flows_data(owners=plain)))
        seen = []
        for _ in range(6):
            await pilot.press("g")
            await pilot.pause()
            seen.append(pane.grouping)
        assert seen == ["process", "service", "remote", "unit", "netns", "none"]


async def test_g_on_a_pod_group_then_enter_lists_its_connections(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        while pane.grouping != "pod":
            await pilot.press("g")
            await pilot.pause()
        at = [r[0] for r in rows(app)].index("shop/checkout-7d9f-x2k4p")
        assert rows(app)[at][1] == "2"
        pane.query_one("#flows-table", LineTable).move_cursor(at)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowDetailScreen)
        text = app.screen.text()
        assert "pod shop/checkout-7d9f-x2k4p: 2 flows" in text
        assert (
            "198.18.240.10:41000 → 10.244.0.5:8080" in text and "192.0.2.50:50000 → 10.244.0.5:8080" in text
        )
        assert "10.244.0.6" not in text


async def test_filter_dialog_takes_identity_terms(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, FlowFilterScreen)
        assert "pod:web ns:shop workload:api unit:nginx container:3f2a netns:x" in screen_text(app)
        await pilot.press(*"ns:shop !pod:canary", "enter")
        await pilot.pause()
        assert pane.filter.text == "ns:shop !pod:canary"
        assert sorted(r[0] for r in rows(app)) == [
            "tcp :41000 → 10.244.0.5:8080",
            "tcp :8080 ← 192.0.2.50:50000",
        ]
        assert "2 of 5 shown" in status(app)
        # a bad identity term: pointed at, the filter kept
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one(Input).value = "unit:"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.has_class("-error") and "unit: needs a value" in str(
            app.screen.query_one("#filter-error", Static).render()
        )
        await pilot.press("escape")
        await pilot.pause()
        assert pane.filter.text == "ns:shop !pod:canary"


async def test_detail_shows_both_ends_whole_identity(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        pane.query_one("#flows-table", LineTable).move_cursor(1)  # haproxy -> the stable pod
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowDetailScreen)
        text = app.screen.text()
        mine = next(line for line in text.splitlines() if line.startswith("198.18.240.10:41000"))
        assert mine == (
            "198.18.240.10:41000  pid 4002  comm haproxy  service haproxy  netns lab-lb"
            "  cgroup /ebpftop-lab/lb  unit lab-lb.scope"
        )
        theirs = text[text.index("10.244.0.5:8080  pid 4003") :]
        for pair in (
            "comm checkout",
            "service checkout",
            "version 1.4.2",
            "env prod",
            "track stable",
            "netns cni-7a1f",
            f"cgroup {STABLE.cgroup}",
            f"container {'ab' * 32}",
            "runtime containerd",
            f"pod_uid {POD_UID}",
            "qos burstable",
            "pod checkout-7d9f-x2k4p",
            "namespace shop",
            "workload Deployment/checkout",
            "container_name app",
        ):
            assert pair in theirs, pair
        await pilot.press("escape")
        await pilot.pause()
        # the outside client is no socket here: the detail says so
        pane.query_one("#flows-table", LineTable).move_cursor(3)
        await pilot.press("enter")
        await pilot.pause()
        text = app.screen.text()
        assert "192.0.2.50:50000  not a socket on this node, or not seen" in text
        assert "10.244.0.5:8080  pid 4003  comm checkout" in text


async def test_hostile_identity_strings_show_literally(tmp_path):
    evil = replace(
        HAPROXY, comm=HOSTILE, unit=HOSTILE, netns=HOSTILE, pod=HOSTILE, namespace=MARKUP, cgroup=HOSTILE
    )
    data = flows_data(owners=(LOADGEN, evil, STABLE, CANARY, CURL))
    for size in ((80, 24), (400, 40)):
        app = make_app(tmp_path)
        async with app.run_test(size=size) as pilot:
            pane = await show(pilot, data)
            if size[0] > 80:  # the where column of HAProxy's two flows
                assert "where" in labels(app) and screen_text(app).count(f"{MARKUP}/") >= 2
            assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
            while pane.grouping != "pod":
                await pilot.press("g")
                await pilot.pause()
            at = next(i for i, r in enumerate(rows(app)) if r[0].startswith(f"{MARKUP}/[b"))
            assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
            pane.query_one("#flows-table", LineTable).move_cursor(at)
            await pilot.press("enter")
            await pilot.pause()
            assert f"pod {MARKUP}/{MARKUP}\\x1b]0;pwned" in app.screen.text()
            assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
            await pilot.press("escape")
            await pilot.pause()
            while pane.grouping != "none":
                await pilot.press("g")
                await pilot.pause()
            await pilot.press("enter")  # loadgen -> the hostile HAProxy
            await pilot.pause()
            assert isinstance(app.screen, FlowDetailScreen)
            text = app.screen.text()
            assert f"comm {MARKUP}" in text and "\\x1b]0;pwned" in text and "\\u202eevil" in text
            assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))


# --- the Profiles pane ---------------------------------------------------------------


def process(pid: int, who: Identity, **more: str) -> tuple:
    tags = {"pid": str(pid), "comm": who.comm or "?", "source": "bpf"}
    for key, value in (
        ("service", who.service),
        ("unit", who.unit),
        ("netns", who.netns),
        ("container", who.container[:12] if who.container else None),
        ("pod_uid", who.pod_uid),
        ("pod", who.pod),
        ("ns", who.namespace),
        ("workload", who.workload),
    ):
        if value:
            tags[key] = value
    return make_tags({**tags, **more})


def profile(*stacks: StackSample) -> ProfilesData:
    window = summarize("bpf 10s", "bpf", NOW - 10, NOW, stacks)
    return ProfilesData(hz=99, windows=(window,))


def samples(stable=STABLE, haproxy=HAPROXY) -> ProfilesData:
    return profile(
        StackSample(("main", "serve", "json.encode"), 50, process(4003, stable)),
        StackSample(("main", "serve", "regexp.compile"), 20, process(4004, CANARY)),
        StackSample(
            ("main", "serve", "cart.total"), 10, process(4013, replace(STABLE, pod="checkout-7d9f-b9z1m"))
        ),
        StackSample(("haproxy", "process_stream"), 15, process(4002, haproxy)),
        StackSample(("curl", "main"), 5, process(4005, CURL)),
    )


async def show_profiles(pilot, data: ProfilesData) -> ProfilesPane:
    pilot.app.runtime.bus.publish(snap("profiles", data, ok(NOW - 1), t=NOW - 1))
    await pilot.pause()
    await pilot.press("4")  # at 80 columns only the focused pane has a body
    await pilot.pause()
    return pilot.app.query_one(ProfilesPane)


def profile_rows(app) -> list[list[str]]:
    table = app.query_one("#profiles-table", LineTable)
    return [[text.strip() for text, _style in table.row(i).cells] for i in range(table.count)]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_profiles_where_column_and_group_by_identity(tmp_path, size):
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        pane = await show_profiles(pilot, samples())
        table = app.query_one("#profiles-table", LineTable)
        assert [c.label for c in table.columns] == ["share", "samples", "service", "pid", "comm", "where"]
        where = {r[3]: r[-1] for r in profile_rows(app)}
        assert where == {
            "4003": "shop/checkout-7d9f-x2k4p",
            "4004": "shop/checkout-canary-5b8c-q7w2e",
            "4013": "shop/checkout-7d9f-b9z1m",
            "4002": "lab-lb.scope",
            "4005": "—",
        }
        assert "g: group" in str(app.query_one("#profiles-keys", Static).render())
        # 100 samples: the stable pod's two processes 50 + 10, the canary's 20, HAProxy
        # 15 (a unit, no pod), curl 5 (nothing); each process in one row
        expect = {
            "pod": [
                ["50.0%", "50", "shop/checkout-7d9f-x2k4p"],
                ["20.0%", "20", "(no pod)"],
                ["20.0%", "20", "shop/checkout-canary-5b8c-q7w2e"],
                ["10.0%", "10", "shop/checkout-7d9f-b9z1m"],
            ],
            "namespace": [["80.0%", "80", "shop"], ["20.0%", "20", "(no namespace)"]],
            "workload": [
                ["60.0%", "60", "Deployment/checkout"],
                ["20.0%", "20", "(no workload)"],
                ["20.0%", "20", "Deployment/checkout-canary"],
            ],
            "unit": [["85.0%", "85", "(no unit)"], ["15.0%", "15", "lab-lb.scope"]],
            "netns": [
                ["60.0%", "60", "cni-7a1f"],
                ["20.0%", "20", "cni-9c2e"],
                ["15.0%", "15", "lab-lb"],
                ["5.0%", "5", "(host)"],
            ],
        }
        seen = []
        for _ in range(7):
            await pilot.press("g")
            await pilot.pause()
            seen.append(pane.grouping)
            if pane.grouping in expect:
                assert [c.label for c in table.columns] == ["share", "samples", pane.grouping]
                assert profile_rows(app) == expect[pane.grouping], pane.grouping
                assert f"by {pane.grouping}" in str(app.query_one("#profiles-title", Static).render())
        assert seen == ["pod", "namespace", "workload", "unit", "container", "netns", "tags"]

        # Enter on a regrouped row: its processes' whole identity, then its functions
        while pane.grouping != "namespace":
            await pilot.press("g")
            await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ProfileDetailScreen)
        text = app.screen.text()
        assert "namespace=shop: 80 samples" in text
        line = next(x for x in text.splitlines() if x.startswith("pid 4003"))
        assert line == (
            f"pid 4003  comm checkout  service checkout  netns cni-7a1f  container {'ab' * 6}"
            f"  pod_uid {POD_UID}  pod checkout-7d9f-x2k4p  ns shop  workload Deployment/checkout"
        )
        assert "pid 4004" in text and "pid 4013" in text and "pid 4002" not in text
        assert "json.encode" in text and "process_stream" not in text


async def test_profiles_hostile_identity_tags_show_literally(tmp_path):
    evil = replace(HAPROXY, unit=HOSTILE, netns=HOSTILE)
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show_profiles(pilot, samples(haproxy=evil))
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
        while pane.grouping != "unit":
            await pilot.press("g")
            await pilot.pause()
        assert MARKUP in screen_text(app) and "\\x1b]0;pwned" in screen_text(app)
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
        table = app.query_one("#profiles-table", LineTable)
        table.move_cursor(next(i for i, r in enumerate(profile_rows(app)) if MARKUP in r[-1]))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ProfileDetailScreen)
        text = app.screen.text()
        assert f"unit {MARKUP}" in text and "\\u202eevil" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
