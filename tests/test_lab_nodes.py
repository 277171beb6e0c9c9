"""The lab's fleet (`lab up --nodes 3`), for real: three ebpftop agents, each in a node
namespace with its own traffic, scraped by the lab's Prometheus as job `ebpftop`; one node
made bad (`inject node2 retransmits=on`, `flood=on`, `agent=down`) stands out in what
Prometheus has, and only that one; bad terms change nothing; `lab down` leaves nothing.

Its own lab instance ("nd"). Every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from labs import running_lab

from ebpftop.cli.main import main as cli_main
from ebpftop.lab import nodefaults, nodes, procs, prometheus, topology
from ebpftop.lab import state as statefile
from ebpftop.lab.errors import LabError
from ebpftop.lab.layout import HOST_OFFSETS, MAX_NODES, LabConfig, Layout

CFG = LabConfig(name="nd", subnet="198.18.242.0/24", prometheus_port=19242, rate=10, nodes=3)
DEADLINE = 90.0
NAMES = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def lab():
    with running_lab(CFG) as layout:
        yield layout


def prom() -> prometheus.PrometheusAPI:
    return prometheus.PrometheusAPI(Layout(CFG).prometheus_url, timeout=5.0)


def by_node(promql: str) -> dict[str, float]:
    return {r["metric"].get("node", ""): r["value"] for r in prom().query(promql)}


def poll(what: str, pred, timeout: float = DEADLINE):
    """pred() -> (ok, value) until ok; fails naming `what` and the last value seen."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        ok, last = pred()
        if ok:
            return last
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {timeout:g}s; last {last!r}")


def inject(*terms: str) -> int:
    return cli_main(["lab", "inject", "--instance", CFG.name, *terms])


RETRANS = "sum by (node) (rate(ebpftop_tcp_retransmits_total[15s]))"
BYTES = "sum by (node) (rate(ebpftop_flow_bytes_total[15s]))"


# -- without a lab -------------------------------------------------------------------


def test_node_addresses_stay_clear_of_the_labs_parts_and_of_each_other():
    lay = Layout(LabConfig(name="abcd", subnet="198.18.7.0/24", nodes=MAX_NODES))
    parts = {lay.addr(p) for p in HOST_OFFSETS}
    node_addrs = [lay.node_addr(k) for k in lay.node_ids]
    pod_addrs = [a for k in lay.node_ids for a in lay.pod_link_addrs(k)]
    every = parts | set(node_addrs) | set(pod_addrs)
    assert len(every) == len(parts) + 3 * MAX_NODES
    assert all(a.startswith("198.18.7.") for a in every)
    assert max(len(n) for n in lay.links + lay.namespaces) <= 15
    assert "ebt-abcd-n8" in lay.namespaces and "ebt-abcd-p8" in lay.namespaces
    # without --nodes the lab is what it was
    plain = Layout(LabConfig(name="abcd", subnet="198.18.7.0/24"))
    assert plain.namespaces == [plain.netns(p) for p in HOST_OFFSETS if p != "bridge"]


def test_prometheus_scrapes_the_nodes_as_job_ebpftop_labelled_by_node():
    services = {"stable": "10.0.0.1:8000"}
    plain = prometheus.render_config(services=services, haproxy="10.0.0.2:8404")
    assert prometheus.render_config(services=services, haproxy="10.0.0.2:8404", nodes={}) == plain
    assert '"ebpftop"' not in plain
    with_nodes = prometheus.render_config(
        services=services, haproxy="10.0.0.2:8404", nodes={"node1": "10.0.0.101:9464"}
    )
    cfg = json.loads(with_nodes.split("\n", 1)[1])
    assert cfg["global"]["scrape_interval"] == "1s"
    job = cfg["scrape_configs"][-1]
    assert job == {
        "job_name": "ebpftop",
        "static_configs": [{"targets": ["10.0.0.101:9464"], "labels": {"node": "node1"}}],
    }


@pytest.mark.parametrize(
    ("terms", "words"),
    [
        (["retransmits=200%"], ("bad value '200%' for retransmits", "0.1-50%")),
        (["retransmits=maybe"], ("bad value", "on, off")),
        (["flood=1GB/s"], ("bad value", "for flood", "50MB/s")),
        (["agent=sideways"], ("for agent", "down or up")),
        (["bogus=1"], ("unknown term 'bogus=1'", "retransmits=", "flood=", "agent=")),
        (["on"], ("unknown term 'on'",)),
        (["flood=on", "flood=off"], ("flood given twice",)),
        ([], ("nothing to inject",)),
    ],
)
def test_bad_node_terms_are_refused_naming_what_is_allowed(terms, words):
    with pytest.raises(LabError) as err:
        nodefaults.parse("node2", terms)
    assert err.value.part == "inject"
    assert all(w in str(err.value) for w in words), str(err.value)


def test_node_terms_parse_whole():
    assert nodefaults.parse("node1", ["retransmits=on"]) == nodefaults.NodeFault(retransmits=0.08)
    assert nodefaults.parse("node1", ["retransmits=5%", "flood=500KB/s", "agent=down"]) == (
        nodefaults.NodeFault(retransmits=0.05, flood_bps=500_000, agent="down")
    )
    assert nodefaults.parse("node1", ["retransmits=off", "flood=off"]) == (
        nodefaults.NodeFault(retransmits=0.0, flood_bps=0)
    )


def test_a_node_the_lab_does_not_have_is_refused():
    with pytest.raises(LabError, match=r"this lab has no nodes .*lab up --nodes N"):
        nodes.require(Layout(LabConfig()), "node1")
    three = Layout(LabConfig(nodes=3))
    assert nodes.require(three, "node3") == 3
    for bad in ("node4", "node0", "node"):
        with pytest.raises(LabError, match=r"this lab has node1-node3"):
            nodes.require(three, bad)


# -- on a lab with three nodes ---------------------------------------------------------


@pytest.mark.integration
def test_every_node_is_up_in_prometheus_with_its_label_and_its_bytes_grow(lab):
    found = nodes.nodes(CFG)
    assert [n.name for n in found] == NAMES
    token = found[0].token_file
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600 and len(Path(token).read_text().strip()) >= 16
    for n in found:
        assert os.path.exists(n.agent_socket), n
        assert n.metrics_url == f"http://{n.addr}:{nodes.METRICS_PORT}/metrics"
    poll(
        "up{job=ebpftop} = 1 for every node",
        lambda: ((got := by_node('up{job="ebpftop"}')) == dict.fromkeys(NAMES, 1.0), got),
    )
    targets = [t for t in prom().targets() if t["job"] == "ebpftop"]
    assert sorted((t["labels"]["node"], t["url"]) for t in targets) == [
        (n.name, f"http://{n.metrics_target}/metrics") for n in found
    ]
    total = "sum by (node) (ebpftop_flow_bytes_total)"
    first = by_node(total)
    poll(
        "every node's ebpftop_flow_bytes_total grows",
        lambda: (all((now := by_node(total)).get(n, 0) > first.get(n, 0) for n in NAMES), now),
    )


@pytest.mark.integration
def test_retransmits_on_node2_show_on_node2_alone_then_stop(lab):
    poll(
        "no node retransmits before the inject",
        lambda: ((got := by_node(RETRANS)) and all(got.get(n, 1) == 0 for n in NAMES), got),
    )
    assert inject("node2", "retransmits=on") == 0
    try:
        poll(
            "node2 retransmits, more than every other node",
            lambda: (
                (got := by_node(RETRANS)).get("node2", 0) > 0
                and all(got["node2"] > got.get(n, 0) for n in NAMES if n != "node2"),
                got,
            ),
        )
    finally:
        assert inject("node2", "retransmits=off") == 0
    poll("node2's retransmits back to 0", lambda: (by_node(RETRANS).get("node2") == 0, by_node(RETRANS)))


@pytest.mark.integration
def test_a_flood_on_node2_dwarfs_the_other_nodes_bytes(lab):
    assert inject("node2", "flood=on") == 0
    try:
        poll(
            "node2's byte rate five times every other node's",
            lambda: (
                (got := by_node(BYTES)).get("node2", 0)
                > 5 * max(got.get(n, 0) for n in NAMES if n != "node2")
                and all(got.get(n, 0) > 0 for n in NAMES),
                got,
            ),
        )
        st = statefile.load(lab.state_file)
        assert st is not None and st.proc("node2-flood") is not None
        assert "flood=2MB/s" in nodefaults.load(st.tmpdir)["node2"].describe()
    finally:
        assert inject("node2", "flood=off") == 0
    st = statefile.load(lab.state_file)
    assert st is not None and st.proc("node2-flood") is None


def _observable(layout: Layout) -> tuple:
    """What an inject could change: processes, faults on, the pod's packet filter."""
    st = statefile.load(layout.state_file)
    assert st is not None
    rules = subprocess.run(
        ["ip", "netns", "exec", layout.pod_netns(2), "iptables", "-S", "OUTPUT"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return (
        sorted((p.part, p.pid) for p in st.processes),
        nodefaults.load(st.tmpdir),
        rules,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("terms", "words"),
    [
        (["node9", "flood=on"], ("unknown node 'node9'", "node1-node3")),
        (["node2", "retransmits=on", "agent=sideways"], ("bad value 'sideways' for agent",)),
        (["node2", "flood=on", "bogus"], ("unknown term 'bogus'",)),
    ],
)
def test_bad_terms_change_nothing(lab, capsys, terms, words):
    before = _observable(lab)
    assert inject(*terms) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert _observable(lab) == before


@pytest.mark.integration
def test_node2s_agent_down_is_its_target_down_and_said_so_then_up(lab, capsys):
    assert inject("node2", "agent=down") == 0
    try:
        poll("node2's target down", lambda: (by_node('up{job="ebpftop"}').get("node2") == 0, None))
        capsys.readouterr()
        assert cli_main(["lab", "status", "--instance", CFG.name]) == 1
        out = capsys.readouterr().out
        assert "node2       FAIL  agent down by `lab inject node2 agent=down`" in out, out
        assert "made to fail on purpose: node2" in out
    finally:
        assert inject("node2", "agent=up") == 0
    poll("node2's target up again", lambda: (by_node('up{job="ebpftop"}').get("node2") == 1, None))
    capsys.readouterr()
    assert cli_main(["lab", "status", "--instance", CFG.name]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}       ok    agent pid" in out and "target up" in out for n in NAMES), out


def _agents_programs(st: statefile.LabState) -> set[int]:
    from ebpftop.collectors.selfcost.programs import held_prog_ids

    agents = [r for r in st.processes if r.part.endswith("-agent")]
    assert len(agents) == 3 and all(procs.alive(r) for r in agents)
    held = set().union(*(held_prog_ids(f"/proc/{r.pid}/fd") for r in agents))
    assert held, "the agents hold their BPF programs"
    return held


def _nothing_left(layout: Layout, st: statefile.LabState, held: set[int]) -> None:
    assert not any(procs.alive(r) for r in st.processes)
    assert topology.existing_namespaces(layout) == [] and topology.existing_links(layout) == []
    assert not procs.find_by_argv_fragment(st.tmpdir or "/nonexistent")
    assert not os.path.exists(st.tmpdir or "")
    pins = os.listdir(nodes.PIN_ROOT) if os.path.isdir(nodes.PIN_ROOT) else []
    assert not [p for p in pins if p.startswith(f"lab-{CFG.name}-")], pins
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    assert held & {p["id"] for p in json.loads(out.stdout)} == set(), "programs of the agents still loaded"


@pytest.mark.integration
def test_lab_down_leaves_no_namespace_link_agent_pin_or_program(lab):
    from ebpftop.lab import manager

    st = statefile.load(lab.state_file)
    assert st is not None
    held = _agents_programs(st)
    removed = manager.down(CFG)
    assert any("node2-agent" in r for r in removed), removed
    _nothing_left(lab, st, held)


@pytest.mark.integration
def test_lab_down_without_its_state_file_still_removes_the_nodes(lab):
    """After a crash that lost the state file, `down` finds the nodes by their names."""
    from ebpftop.lab import manager

    manager.up(CFG)
    st = statefile.load(lab.state_file)
    assert st is not None and st.complete
    held = _agents_programs(st)
    os.unlink(lab.state_file)
    removed = manager.down(CFG)
    assert any("in namespace ebt-nd-n2" in r for r in removed), removed
    _nothing_left(lab, st, held)
