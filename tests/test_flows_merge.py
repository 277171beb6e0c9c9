"""One connection, one row (collectors/flows/connections.py) and the default view's
folding of ended connections (collectors/flows/view.py), without a kernel: the map's
entries are made here, byte for byte as flows.h lays them out."""

from __future__ import annotations

import random
import socket
from dataclasses import replace

import pytest
from fake_sockets import Names, TableFinder
from test_flows_logic import _Datapath as OneInterface

from ebpftop.collectors.flows import connections as cx
from ebpftop.collectors.flows import filter as flt
from ebpftop.collectors.flows import view
from ebpftop.collectors.flows.attribution import Attributor
from ebpftop.collectors.flows.layout import FLOW_KEY
from ebpftop.collectors.flows.model import FlowPath, FlowRecord
from ebpftop.collectors.flows.table import FlowTable

S = 1_000_000_000
CLIENT, SERVER = "10.9.0.2", "10.9.0.1"


def key(
    src: str, sport: int, dst: str, dport: int, *, ifindex: int = 9, egress: bool = False, proto=6
) -> bytes:
    a, b = socket.inet_aton(src) + bytes(12), socket.inet_aton(dst) + bytes(12)
    return FLOW_KEY.pack(a, b, ifindex, sport, dport, proto, 4, 1 if egress else 0)


def fwd(ifindex: int, egress: bool, sport: int = 40000) -> bytes:
    return key(CLIENT, sport, SERVER, 80, ifindex=ifindex, egress=egress)


def back(ifindex: int, egress: bool, sport: int = 40000) -> bytes:
    return key(SERVER, 80, CLIENT, sport, ifindex=ifindex, egress=egress)


# --- merging ----------------------------------------------------------------------------


def reference(table: FlowTable, moved_b, moved_p) -> dict[bytes, tuple]:
    """The rule, one connection at a time: per way the largest figure of its hooks, per
    connection the sum of its ways; moved unknown only when no hook knows."""
    ways: dict[tuple[bytes, bool], list[int]] = {}
    for i, k in enumerate(table.keys):
        c = cx.conn_key(k)
        ways.setdefault((c, cx.lower_to_higher(k, c)), []).append(i)
    out: dict[bytes, list] = {}
    for (c, _way), ix in ways.items():
        known_b = [moved_b[i] for i in ix if moved_b[i] is not None]
        known_p = [moved_p[i] for i in ix if moved_p[i] is not None]
        mb = max(known_b) if known_b else None
        mp = max(known_p) if known_p else None
        acc = out.setdefault(c, [None, None, 0, 0])
        acc[0] = mb if acc[0] is None else acc[0] + (mb or 0)
        acc[1] = mp if acc[1] is None else acc[1] + (mp or 0)
        acc[2] += max(table.nbytes[i] for i in ix)
        acc[3] += max(table.packets[i] for i in ix)
    return {c: tuple(v) for c, v in out.items()}


def merged(conns: cx.Connections, table: FlowTable) -> dict[bytes, tuple]:
    out = {}
    for c, members in enumerate(conns.members):
        first = members if isinstance(members, int) else members[0]
        out[cx.conn_key(table.keys[first])] = (
            conns.moved_bytes[c],
            conns.moved_packets[c],
            conns.nbytes[c],
            conns.packets[c],
        )
    return out


def test_a_connection_through_three_hooks_counts_each_packet_once():
    # client veth ingress, bridge ingress... : the same 10 packets seen on three hooks
    # (bytes differ by a link-layer header), the 6 answers on two
    rows = {
        fwd(3, False): (10, 1140, 5, 9),
        fwd(4, False): (10, 1000, 5, 9),
        fwd(5, True): (10, 1140, 6, 9),
        back(5, False): (6, 700, 6, 9),
        back(3, True): (6, 700, 6, 9),
    }
    table = FlowTable.from_rows(rows)
    moved_b = [1140, 1000, None, 700, 650]
    moved_p = [10, 10, None, 6, 6]
    conns = cx.Merger().merge(table, moved_b, moved_p)
    assert len(conns) == 1 and sorted(conns.members[0]) == [0, 1, 2, 3, 4]
    assert (conns.nbytes, conns.packets) == ([1140 + 700], [16])
    assert (conns.moved_bytes, conns.moved_packets) == ([1840], [16])
    # the forward way is the one seen first: the client's, on hook 3
    assert cx.first_entry(table, conns.members[0]) == 0


def test_one_hook_each_way_sums_the_two_ways_and_keeps_unknown_unknown():
    rows = {fwd(9, False): (3, 300, 1, 2), back(9, True): (2, 120, 1, 2), fwd(9, False, 40001): (1, 60, 1, 1)}
    table = FlowTable.from_rows(rows)
    conns = cx.Merger().merge(table, [100, None, 60], [1, None, 1])
    got = merged(conns, table)
    assert got[cx.conn_key(fwd(9, False))] == (100, 1, 420, 5)
    assert got[cx.conn_key(fwd(9, False, 40001))] == (60, 1, 60, 1)
    both_unknown = cx.Merger().merge(table, [None, None, 60], [None, None, 1])
    assert merged(both_unknown, table)[cx.conn_key(fwd(9, False))][:2] == (None, None)


def test_entries_alone_are_the_columns_as_they_are_and_a_steady_map_keeps_its_plan():
    rows = {fwd(9, False, p): (1, 100, 1, 1) for p in range(40000, 40100)}
    table = FlowTable.from_rows(rows)
    moved = [100] * 100
    m = cx.Merger()
    conns = m.merge(table, moved, moved)
    assert conns.nbytes is table.nbytes and conns.moved_bytes is moved and len(conns) == 100
    plan = m.plan(table)
    again = FlowTable.from_rows(dict(rows))  # same keys, same order: the plan is kept
    assert m.plan(again) is plan
    rows[back(9, True, 40000)] = (1, 50, 1, 1)
    assert m.plan(FlowTable.from_rows(rows)) is not plan


@pytest.mark.parametrize("seed", range(8))
def test_merge_agrees_with_the_rule_on_random_maps(seed):
    rnd = random.Random(seed)
    rows = {}
    for _ in range(rnd.randint(1, 60)):
        sport = rnd.randint(40000, 40015)
        for _ in range(rnd.randint(1, 4)):
            k = (fwd if rnd.random() < 0.5 else back)(rnd.choice([3, 4, 5]), rnd.random() < 0.5, sport)
            rows[k] = (rnd.randint(1, 50), rnd.randint(60, 9000), 1, 2)
    table = FlowTable.from_rows(list(rows.items()))
    moved_b = [rnd.choice([None, rnd.randint(0, 9000)]) for _ in rows]
    moved_p = [None if b is None else rnd.randint(0, 50) for b in moved_b]
    m = cx.Merger()
    for _ in range(2):  # a fresh plan, then the kept one
        conns = m.merge(table, moved_b, moved_p)
        assert merged(conns, table) == reference(table, moved_b, moved_p)
        assert sorted(i for g in conns.members for i in ((g,) if isinstance(g, int) else g)) == list(
            range(len(table))
        )


def test_the_forward_way_goes_to_the_server_port_else_it_is_the_first_seen():
    # a client port (ephemeral range) and a server port: towards the server, even when
    # its answer was seen a jiffy earlier (a connection open before ebpftop started)
    t = FlowTable.from_rows({fwd(9, False): (1, 60, 7, 7), back(9, True): (1, 60, 6, 7)})
    assert cx.first_entry(t, (0, 1)) == 0
    # two ports of the same kind: the way seen first...
    peer = key(SERVER, 50000, CLIENT, 40000)
    t = FlowTable.from_rows({fwd(9, False): (1, 60, 7, 7), peer: (1, 60, 6, 7)})
    assert cx.first_entry(t, (0, 1)) == 1
    # ...and in the same jiffy the way towards the lower port (peer's: to 40000)
    t = FlowTable.from_rows({key(CLIENT, 40000, SERVER, 50000): (1, 60, 6, 7), peer: (1, 60, 6, 7)})
    assert cx.first_entry(t, (0, 1)) == 1


class _Datapath(OneInterface):
    """test_flows_logic's map stand-in, on a client's and a server's interface."""

    def __init__(self):
        from ebpftop.collectors.flows.loader import Attachment

        super().__init__()
        self.attachments = {"vc": Attachment("vc", 3, "tcx", []), "vs": Attachment("vs", 5, "tcx", [])}


def test_the_collector_reports_one_record_per_connection_with_its_hooks(monkeypatch):
    from ebpftop.collectors.flows import collector

    clock = [1000 * S]
    monkeypatch.setattr(collector.time, "monotonic_ns", lambda: clock[0])
    monkeypatch.setattr(collector.kclock, "calibration", lambda: (S, 0, 0))  # a jiffy is a ns here
    monkeypatch.setattr(collector, "ifindex_of", lambda name: {"vc": 3, "vs": 5}[name])
    c = collector.FlowsCollector(
        ["vc", "vs"],
        tcp_events=False,
        attributor=Attributor(finder=TableFinder(lambda: []), identities=Names()),
    )
    c.dp = dp = _Datapath()
    t = 999 * S
    dp.map = {
        fwd(3, False): (10, 1000, t, t),
        fwd(5, True): (10, 1000, t, t),
        back(5, False): (5, 300, t + 1, t),
        back(3, True): (5, 300, t + 1, t),
        key(SERVER, 53, CLIENT, 5353, ifindex=3, egress=True, proto=17): (1, 80, t, t),
    }
    first = c._sample()
    assert (first.flows_tracked, first.map_entries) == (2, 5)
    assert (first.total_bytes, first.total_packets) == (1380, 16)  # each packet once
    clock[0] += 2 * S
    dp.map[fwd(3, False)] = (30, 3000, t, t + 10)
    dp.map[fwd(5, True)] = (30, 3000, t, t + 10)
    second = c._sample()
    tcp = next(f for f in second.flows if f.proto == "tcp")
    assert (tcp.src, tcp.sport, tcp.dst, tcp.dport) == (CLIENT, 40000, SERVER, 80)
    assert (tcp.iface, tcp.direction) == ("vc", "ingress")  # where its first packet was seen
    assert (tcp.packets, tcp.bytes, tcp.bps, tcp.pps) == (35, 3300, 1000.0, 10.0)
    assert tcp.paths == (
        FlowPath("vc", "ingress", True, 30, 3000, 1000.0, 10.0),
        FlowPath("vs", "egress", True, 30, 3000, 1000.0, 10.0),
        FlowPath("vc", "egress", False, 5, 300, 0.0, 0.0),
        FlowPath("vs", "ingress", False, 5, 300, 0.0, 0.0),
    )
    assert (second.total_bps, second.total_pps) == (1000.0, 10.0)  # not 2000: one way, two hooks
    assert flt.parse("iface:vs")(tcp) and not flt.parse("iface:eth0")(tcp)


# --- folding and order ------------------------------------------------------------------

NOW = 1_700_000_000.0


def conn(sport: int, *, bps=0.0, closed=True, last=NOW - 1, comm="curl", service=None, **kw) -> FlowRecord:
    base = dict(
        iface="vc",
        direction="ingress",
        proto="tcp",
        src=CLIENT,
        sport=sport,
        dst=SERVER,
        dport=80,
        packets=10,
        bytes=1000,
        bps=bps,
        pps=bps / 100 if bps else bps,
        first_seen=NOW - 5,
        last_seen=last,
        pid=sport,
        comm=comm,
        service=service,
        closed=closed,
    )
    base.update(kw)
    return FlowRecord(**base)


def test_ended_connections_fold_per_owner_addresses_and_port():
    live = conn(1, bps=500.0, closed=False)
    quiet = conn(2, closed=False, last=NOW - view.IDLE_AFTER)  # no packet for IDLE_AFTER: ended
    shorts = [conn(p, bps=100.0) for p in range(10, 20)]  # came and went within the tick
    other_port = conn(30, dport=8080)
    other_owner = conn(31, comm="wget")
    rows = view.fold_ended([live, quiet, *shorts, other_port, other_owner], NOW)
    folds = [r for r in rows if isinstance(r, view.FlowFold)]
    assert rows[0] is live and len(folds) == 1 and other_port in rows and other_owner in rows
    fold = folds[0]
    assert fold.connections == 11 and set(fold.members) == {quiet, *shorts}
    assert (fold.proto, fold.owner, fold.src, fold.dst, fold.dport) == ("tcp", "curl", CLIENT, SERVER, 80)
    assert (fold.bytes, fold.packets, fold.bps) == (11_000, 110, 1000.0)
    assert fold.common("comm") == "curl" and fold.common("pid") is None  # one per request
    # the service names the owner when known, whatever the processes
    a, b = conn(40, comm="python", service="checkout"), conn(41, comm="gunicorn", service="checkout")
    assert [r.connections for r in view.fold_ended([a, b], NOW)] == [2]


def test_ended_rows_take_at_most_half_the_first_screen_while_live_rows_remain():
    folds = [
        view.fold([conn(p, bps=9000.0 - p, comm=f"c{p}"), conn(p + 1000, comm=f"c{p}")]) for p in range(6)
    ]
    live = [conn(100 + i, bps=10.0 - i, closed=False) for i in range(3)]
    rows = view.ordered([*folds, *live], "bps", NOW, window=6)
    assert rows[:6] == [*folds[:3], *live]  # sorted by rate, but 3 of 6 ended at most
    assert rows[6:] == folds[3:]
    # no window: sorted as it is; live rows run out: the ended ones fill the screen
    assert view.ordered([*folds, *live], "bps", NOW, window=0) == [*folds, *live]
    assert view.ordered(folds, "bps", NOW, window=4) == folds
    # at equal rate a live connection comes before an ended one
    idle_live = conn(7, closed=False, bytes=1)
    assert view.ordered([folds[0], replace(idle_live)], "bytes", NOW, window=0)[0] is folds[0]
    assert view.ordered([conn(8, bytes=1), idle_live], "bps", NOW, window=0)[0] is idle_live
    with pytest.raises(ValueError):
        view.ordered([], "nope", NOW, window=1)


def test_within_one_jiffy_the_arriving_hook_is_the_connections_first_whatever_the_map_order():
    """A request crossing the host is seen leaving on the server's veth in the jiffy it
    arrived on the client's: the record (and its owner, and its fold) must not follow the
    map's order, which changes from one read to the next."""
    for order in (1, -1):
        rows = [(fwd(5, True), (10, 1000, 7, 7)), (fwd(3, False), (10, 1000, 7, 7))][::order]
        table = FlowTable.from_rows(rows)
        conns = cx.Merger().merge(table, [None] * 2, [None] * 2)
        first = cx.first_entry(table, conns.members[0])
        assert table.keys[first] == fwd(3, False)  # ingress on the client's veth
