"""Pure logic of the flows source: rate maths, the filter language, sort and group,
service names, the payload's JSON round trip, and how the collector degrades."""

from __future__ import annotations

import asyncio
import ctypes
import json
from types import SimpleNamespace

import pytest
from fake_sockets import Names, TableFinder

from ebpftop.collectors.flows import filter as flt
from ebpftop.collectors.flows import rates, view
from ebpftop.collectors.flows.attribution import Attributor, service_from_environ
from ebpftop.collectors.flows.layout import FLOW_KEY, FLOW_VAL, TCP_EVENT, TCP_TUPLE, decode_key
from ebpftop.collectors.flows.model import FlowRecord, FlowsData, IfaceStatus, TcpEvent
from ebpftop.collectors.flows.table import FlowTable
from ebpftop.core.collector import SourceUnavailable
from ebpftop.core.model import Health, Snapshot, from_json, to_json


def rec(**kw) -> FlowRecord:
    base = dict(
        iface="eth0",
        direction="egress",
        proto="tcp",
        src="10.0.0.1",
        sport=40000,
        dst="192.0.2.9",
        dport=443,
        packets=10,
        bytes=1000,
        bps=100.0,
        pps=1.0,
        first_seen=1.0,
        last_seen=2.0,
    )
    base.update(kw)
    return FlowRecord(**base)


# --- rates ------------------------------------------------------------------------------

S = 1_000_000_000


def test_rate_is_the_delta_over_the_interval():
    assert rates.flow_rate((10, 1000, 5, 6), (30, 4000, 5, 9), 10 * S, 12 * S) == (1500.0, 10.0)


def test_first_sample_has_no_rate():
    assert rates.flow_rate(None, (1, 100, 5, 5), None, 10 * S) == (None, None)


def test_flow_born_since_last_sample_moved_everything_it_has():
    assert rates.flow_rate(None, (4, 400, 11 * S, 11 * S), 10 * S, 12 * S) == (200.0, 2.0)


def test_flow_older_than_last_sample_but_unseen_is_unknown_not_zero():
    assert rates.flow_rate(None, (4, 400, 9 * S, 11 * S), 10 * S, 12 * S) == (None, None)


def test_evicted_and_recreated_entry_starts_from_zero():
    # same key, new first_seen, smaller counters: not a negative rate
    prev = (100, 100_000, 1 * S, 9 * S)
    assert rates.flow_rate(prev, (2, 300, 11 * S, 11 * S), 10 * S, 13 * S) == (100.0, 2 / 3)
    # recreated before the previous sample (missed in between): unknown
    assert rates.flow_rate(prev, (2, 300, 9 * S + 1, 11 * S), 10 * S, 13 * S) == (None, None)


def _rule(prev, cur, prev_ns, now_ns):
    """The rate rule for one flow, spelled out plainly: what moved.moved must agree with."""
    if prev_ns is None or now_ns <= prev_ns:
        return None, None
    if prev is not None and prev[2] == cur[2] and cur[0] >= prev[0] and cur[1] >= prev[1]:
        return cur[1] - prev[1], cur[0] - prev[0]
    if cur[2] >= prev_ns:
        return cur[1], cur[0]
    return None, None


def _moved_by_key(prev, cur, prev_ns, now_ns):
    t = FlowTable.from_rows(cur)
    db, dp = rates.moved(FlowTable.from_rows(prev) if prev is not None else None, t, prev_ns, now_ns)
    return dict(zip(t.keys, zip(db, dp, strict=True), strict=True))


def test_moved_and_totals():
    prev = {b"a": (1, 100, 0, 0)}
    cur = {b"a": (3, 300, 0, 0), b"b": (1, 50, 5 * S, 5 * S), b"c": (1, 1, 1, 1)}
    assert _moved_by_key(prev, cur, 4 * S, 6 * S) == {b"a": (200, 2), b"b": (50, 1), b"c": (None, None)}
    t = FlowTable.from_rows(cur)
    db, dp = rates.moved(FlowTable.from_rows(prev), t, 4 * S, 6 * S)
    assert rates.total_rate(db, dp, 2.0) == (125.0, 1.5)  # c (unknown) left out, not counted as 0
    assert rates.total_rate(db, dp, None) == (None, None)
    assert rates.total_rate([], [], 2.0) == (0, 0)
    assert rates.total_rate([None], [None], 2.0) == (None, None)


def test_moved_agrees_with_the_rule_on_every_case():
    prev = {
        b"same": (10, 1000, 5, 6),
        b"recreated": (100, 100_000, 1 * S, 9 * S),
        b"missed": (100, 100_000, 1 * S, 9 * S),
        b"shrunk": (10, 1000, 5, 6),
        b"gone": (1, 1, 1, 1),
    }
    cur = {
        b"same": (30, 4000, 5, 9),
        b"recreated": (2, 300, 11 * S, 11 * S),
        b"missed": (2, 300, 9 * S + 1, 11 * S),
        b"shrunk": (5, 500, 5, 9),
        b"born": (4, 400, 11 * S, 11 * S),
        b"unseen": (4, 400, 9 * S, 11 * S),
    }
    for prev_ns, now_ns in ((10 * S, 13 * S), (None, 13 * S), (13 * S, 13 * S)):
        want = {k: _rule(prev.get(k), v, prev_ns, now_ns) for k, v in cur.items()}
        assert _moved_by_key(prev, cur, prev_ns, now_ns) == want
    assert len(set(_moved_by_key(prev, cur, 10 * S, 13 * S).values())) > 3  # the cases differ


@pytest.mark.parametrize("seed", range(40))
def test_moved_by_column_equals_the_rule_flow_by_flow(seed):
    # Random maps between two ticks: flows kept (in or out of order), grown, re-created,
    # shrunk, new and gone; the same order (the column fast path) in some of them.
    import random

    rng = random.Random(seed)
    prev_ns, now_ns = 100 * S, 101 * S
    prev = {
        bytes([i]) * 4: (rng.randrange(1, 50), rng.randrange(5, 5000), rng.choice((5, 99 * S)), 0)
        for i in range(rng.randrange(30))
    }
    cur = {}
    for k, (p, b, f, _) in prev.items():
        roll = rng.random()
        if roll < 0.5:
            cur[k] = (p + rng.randrange(3), b + rng.randrange(300), f, 0)
        elif roll < 0.6:
            cur[k] = (1, 10, rng.choice((100 * S + 5, 99 * S + 7)), 0)  # re-created, after or before prev
        elif roll < 0.7:
            cur[k] = (p, b - 5, f, 0)  # fewer bytes with the same first seen
        elif roll < 0.8:
            cur[k] = (p - 1, b, f, 0)  # fewer packets
    for i in range(rng.randrange(10)):
        cur[bytes([200 + i]) * 4] = (1, 64, rng.choice((100 * S + 1, 50 * S)), 0)
    items = list(cur.items())
    if seed % 3:
        rng.shuffle(items)
    else:
        items.sort(key=lambda kv: list(prev).index(kv[0]) if kv[0] in prev else 1000)
    got = _moved_by_key(prev, dict(items), prev_ns, now_ns)
    assert got == {k: _rule(prev.get(k), v, prev_ns, now_ns) for k, v in items}


def test_flow_table_from_the_kernel_buffers():
    keys = [FLOW_KEY.pack(bytes(16), bytes(16), i, 1, 2, 17, 4, 0) for i in range(3)]
    vals = [FLOW_VAL.pack(i, 10 * i, 100 + i, 200 + i) for i in range(3)]
    t = FlowTable.from_raw(b"".join(keys), b"".join(vals))
    assert t.keys == keys and t.rows()[keys[2]] == (2, 20, 102, 202) and len(t) == 3
    assert t == FlowTable.from_rows({k: FLOW_VAL.unpack(v) for k, v in zip(keys, vals, strict=True)})
    assert t.position() == {k: i for i, k in enumerate(keys)}
    assert t.idle_since(201) == [keys[0]] and t.idle_since(100) == []
    assert t.without([keys[1]]).rows() == {keys[0]: (0, 0, 100, 200), keys[2]: (2, 20, 102, 202)}
    assert len(FlowTable.from_raw(b"", b"")) == 0


def test_evictions_never_go_down():
    assert rates.evictions(inserts=100, live=60, deleted=10) == 30
    assert rates.evictions(inserts=100, live=75, deleted=10, previous=30) == 30
    assert rates.evictions(inserts=5, live=9, deleted=0) == 0


# --- filter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, yes, no",
    [
        ("port:443", rec(), rec(dport=80)),
        ("sport:40000", rec(), rec(sport=1)),
        ("dport:400-500", rec(), rec(dport=501)),
        ("proto:udp", rec(proto="udp"), rec()),
        ("proto:17", rec(proto="udp"), rec()),
        ("10.0.0.0/8", rec(), rec(src="172.16.0.1")),
        ("192.0.2.9", rec(), rec(dst="192.0.2.10")),
        ("dst:192.0.2.0/24", rec(), rec(src="192.0.2.1", dst="10.1.1.1")),
        ("2001:db8::/32", rec(src="2001:db8::1", dst="2001:db8::2"), rec()),
        ("proc:ngin", rec(comm="nginx", pid=7), rec(comm="curl", pid=8)),
        ("proc:nginx", rec(comm="NGINX"), rec(comm=None)),
        ("pid:7", rec(pid=7), rec(pid=8)),
        ("svc:check", rec(service="checkout"), rec(service=None)),
        ("iface:eth0 dir:out", rec(), rec(direction="ingress")),
        ("!port:443", rec(dport=80), rec()),
        ("port:80 port:443 proto:tcp", rec(), rec(proto="udp")),  # same field ORs, fields AND
        ("port:80 port:443", rec(dport=80), rec(dport=22)),
        ("", rec(), None),
    ],
)
def test_filter_matches(text, yes, no):
    f = flt.parse(text)
    assert f(yes)
    if no is not None:
        assert not f(no)


@pytest.mark.parametrize(
    "text, term, position, words",
    [
        ("port:443 prot:udp", "prot:udp", 9, "unknown field 'prot'"),
        ("port:99999", "port:99999", 0, "outside 0-65535"),
        ("proto:tcp port:9-1", "port:9-1", 10, "runs backwards"),
        ("port:https", "port:https", 0, "not a port"),
        ("proto:quic", "proto:quic", 0, "unknown protocol 'quic'"),
        ("10.0.0.0/33", "10.0.0.0/33", 0, "neither field:value nor an address"),
        ("src:10.0.0.300", "src:10.0.0.300", 0, "not an address"),
        ("nginx", "nginx", 0, "did you mean proc:nginx"),
        ("pid:x1", "pid:x1", 0, "must be a number"),
        ("dir:sideways", "dir:sideways", 0, "ingress or egress"),
        ("port:", "port:", 0, "needs a value"),
    ],
)
def test_bad_filter_names_the_term_and_where(text, term, position, words):
    with pytest.raises(flt.FilterError) as info:
        flt.parse(text)
    err = info.value
    assert (err.term, err.position) == (term, position)
    assert words in str(err)
    assert str(err).startswith(f"at {position + 1} ")


def test_filter_applies_to_a_list():
    flows = [rec(dport=443), rec(dport=80), rec(proto="udp", dport=443)]
    assert flt.parse("port:443 proto:tcp").apply(flows) == (flows[0],)


# --- sort and group ---------------------------------------------------------------------


def test_sort_cycles_and_puts_unknown_last():
    keys = [k for k, _ in view.SORTS]
    assert [view.next_sort(k) for k in keys] == keys[1:] + keys[:1]
    a = rec(bps=None, bytes=5)
    b = rec(bps=10.0, bytes=1)
    c = rec(bps=10.0, bytes=9)
    d = rec(bps=0.0)
    assert view.sort_flows([a, b, c, d], "bps") == [c, b, d, a]
    lat = [rec(connect_latency_ms=None), rec(connect_latency_ms=3.0), rec(connect_latency_ms=80.0)]
    assert [f.connect_latency_ms for f in view.sort_flows(lat, "connect_latency_ms")] == [80.0, 3.0, None]
    with pytest.raises(ValueError):
        view.sort_flows([a], "nope")


def test_group_by_process_service_remote():
    flows = [
        rec(pid=1, comm="nginx", service="web", bps=10.0, bytes=100, retransmits=1),
        rec(pid=1, comm="nginx", service="web", bps=None, bytes=50, dst="192.0.2.1"),
        rec(pid=2, comm="curl", bps=5.0, bytes=10),
        rec(direction="ingress", src="198.51.100.7", dst="10.0.0.1", bps=1.0),
    ]
    by_proc = view.group_flows(flows, "process")
    assert [(g.key, g.flows, g.bytes, g.bps, g.retransmits) for g in by_proc] == [
        ("nginx [1]", 2, 150, 10.0, 1),
        ("curl [2]", 1, 10, 5.0, 0),
        ("(unknown process)", 1, 1000, 1.0, 0),
    ]
    assert [g.key for g in view.group_flows(flows, "service")] == ["web", "(no service)"]
    # remote address is the far side whichever the direction
    assert {g.key for g in view.group_flows(flows, "remote")} == {"192.0.2.9", "192.0.2.1", "198.51.100.7"}
    with pytest.raises(ValueError):
        view.group_flows(flows, "colour")


# --- attribution ------------------------------------------------------------------------


def test_service_name_from_otel_environment():
    assert service_from_environ({"OTEL_SERVICE_NAME": "checkout"}) == "checkout"
    assert (
        service_from_environ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name = cart"})
        == "cart"
    )
    both = {"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b"}
    assert service_from_environ(both) == "a"
    assert service_from_environ({"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=x"}) is None
    assert service_from_environ({}) is None


def _conn(local, remote, pid):
    addr = lambda t: SimpleNamespace(ip=t[0], port=t[1]) if t else ()  # noqa: E731
    return SimpleNamespace(laddr=addr(local), raddr=addr(remote), pid=pid)


def test_attribution_prefers_the_kernel_then_the_socket_table():
    now = [0.0]
    calls = []

    def conns():
        calls.append(now[0])
        return [_conn(("10.0.0.1", 5000), ("192.0.2.1", 443), 42), _conn(("0.0.0.0", 8080), None, 43)]

    a = Attributor(refresh=5, clock=lambda: now[0], finder=TableFinder(conns), identities=Names())
    assert a.owner(("10.0.0.1", 5000, "192.0.2.1", 443), (7, "curl")) == (7, "curl")
    assert calls == []  # the kernel's answer needs no /proc scan
    assert a.owner(("10.0.0.1", 5000, "192.0.2.1", 443), None) == (42, None)
    assert a.owner(("10.0.0.1", 8080, "192.0.2.5", 999), None) == (43, None)  # accepted by a listener
    assert a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None) is None
    assert calls == [0.0]  # rescans are rate-limited
    now[0] = 6.0
    a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None)
    assert calls == [0.0]  # a flow the table could not place does not force a rescan
    a.owner(("10.0.0.1", 3, "192.0.2.5", 4), None)
    assert calls == [0.0, 6.0]  # a new unknown one does (once the interval has passed)
    now[0] = 7.0
    a.owner(("10.0.0.1", 5, "192.0.2.5", 6), None)
    assert calls == [0.0, 6.0]
    # misses outlive scans: only new tuples ask for one, however long they rotate
    now[0] = 20.0
    for t in (
        ("10.0.0.1", 1, "192.0.2.5", 2),
        ("10.0.0.1", 3, "192.0.2.5", 4),
        ("10.0.0.1", 5, "192.0.2.5", 6),
    ):
        assert a.owner(t, None) is None
    assert calls == [0.0, 6.0]
    # a miss is retried after miss_retry (60 s): a socket bound since is found
    late = [_conn(("10.0.0.1", 1), ("192.0.2.5", 2), 44)]
    a.finder.conns = lambda: (calls.append(now[0]), late)[1]
    now[0] = 59.0
    assert a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None) is None and calls == [0.0, 6.0]
    now[0] = 61.0
    assert a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None) == (44, None)
    assert calls == [0.0, 6.0, 61.0]


# --- payload ----------------------------------------------------------------------------


def test_flow_record_fast_constructor_makes_the_same_frozen_record():
    import dataclasses
    import inspect

    from ebpftop.collectors.flows.model import FLOW_FIELDS, flow_record

    assert tuple(inspect.signature(flow_record).parameters) == FLOW_FIELDS
    event = TcpEvent(1.0, "connect", "10.0.0.1", 1, "10.0.0.2", 2)
    full = rec(
        sport=1,
        dport=2,
        packets=3,
        bytes=4,
        bps=5.0,
        pps=6.0,
        first_seen=7.0,
        last_seen=8.0,
        retransmits=9,
        connect_latency_ms=0.25,
        pid=11,
        comm="curl",
        service="web",
        events=(event,),
    )
    values = tuple(getattr(full, f) for f in FLOW_FIELDS)
    assert len(set(map(repr, values))) == len(FLOW_FIELDS)  # every field distinct: a swap would show
    fast = flow_record(*values)
    assert fast == full and hash(fast) == hash(full) and type(fast) is type(full)
    assert [getattr(fast, f) for f in FLOW_FIELDS] == list(values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.bytes = 0
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        flow_record(*values[:-1])


def test_payload_round_trips_through_snapshot_json():
    ev = TcpEvent(1.5, "connect", "10.0.0.1", 40000, "192.0.2.9", 443, ms=0.25, pid=7, comm="curl")
    data = FlowsData(
        flows=(
            rec(events=(ev,), connect_latency_ms=0.25, pid=7, comm="curl\x1b[31m", service=None, bps=None),
        ),
        flows_tracked=3,
        total_bytes=10,
        total_packets=2,
        total_bps=None,
        total_pps=None,
        evictions=0,
        update_failures=0,
        not_ip_packets=1,
        truncated_packets=0,
        events_total=None,
        lost_events=None,
        tcp_events_error="TCP events unavailable: x",
        recent_events=(ev,),
        ifaces=(IfaceStatus("eth0", 2, "tcx"), IfaceStatus("gone0", None, None, "interface disappeared")),
        notices=("removed a tc filter",),
        max_flows=1024,
    )
    snap = Snapshot("flows", 3, 10.0, Health(), data)
    text = to_json(snap)
    doc = json.loads(text)
    assert doc["data"]["flows"][0]["bps"] is None  # unknown stays null, never 0
    assert doc["data"]["lost_events"] is None
    assert from_json(text) == snap
    assert data.attached == ("eth0",)


def test_python_layouts_match_the_c_header():
    # flows.h is the one definition; these sizes are what the C compiler lays out.
    assert FLOW_KEY.size == 44 and FLOW_VAL.size == 32 and TCP_TUPLE.size == 40 and TCP_EVENT.size == 80
    raw = FLOW_KEY.pack(
        bytes([10, 0, 0, 1]) + bytes(12), bytes([192, 0, 2, 9]) + bytes(12), 3, 40000, 443, 6, 4, 1
    )
    assert decode_key(raw) == ("10.0.0.1", 40000, "192.0.2.9", 443, 3, "egress", 6)
    v6 = FLOW_KEY.pack(
        bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1]), 1, 1, 2, 17, 6, 0
    )
    assert decode_key(v6)[:3] == ("::1", 1, "192.0.2.1")  # v4-mapped reads as IPv4
    assert ctypes.sizeof(ctypes.c_uint64) * 4 == FLOW_VAL.size


# --- degrading --------------------------------------------------------------------------


def test_not_root_says_so_with_the_fix(monkeypatch):
    from ebpftop.collectors.flows import collector

    monkeypatch.setattr(collector.os, "geteuid", lambda: 1000)
    c = collector.FlowsCollector(["eth0"])
    with pytest.raises(SourceUnavailable) as info:
        asyncio.run(c.start())
    assert info.value.message == "BPF needs root" and "sudo" in info.value.hint


def test_missing_headers_names_the_path(monkeypatch):
    from ebpftop.collectors.flows import collector

    monkeypatch.setattr(collector.os, "geteuid", lambda: 0)
    real = collector.os.uname()
    fake = SimpleNamespace(release="0.0.0-nothing", sysname=real.sysname)
    monkeypatch.setattr(collector.os, "uname", lambda: fake)
    monkeypatch.setattr(collector.os.path, "exists", lambda p: False)
    with pytest.raises(SourceUnavailable) as info:
        collector.preflight()
    assert "/lib/modules/0.0.0-nothing/build" in info.value.message
    assert "linux-headers" in info.value.hint


def test_missing_bcc_says_how_to_install(monkeypatch):
    import builtins

    from ebpftop.collectors.flows import collector

    monkeypatch.setattr(collector.os, "geteuid", lambda: 0)
    real_import = builtins.__import__

    def no_bcc(name, *a, **kw):
        if name == "bcc":
            raise ImportError("no bcc")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_bcc)
    with pytest.raises(SourceUnavailable) as info:
        collector.preflight()
    assert "bcc" in info.value.message and "python3-bpfcc" in info.value.hint


def test_degraded_reason_lists_interface_and_tcp_problems():
    from ebpftop.collectors.flows.collector import FlowsCollector

    base = dict(
        flows=(),
        flows_tracked=0,
        total_bytes=0,
        total_packets=0,
        total_bps=None,
        total_pps=None,
        evictions=0,
        update_failures=0,
        not_ip_packets=0,
        truncated_packets=0,
        events_total=None,
        lost_events=None,
        recent_events=(),
    )
    gone = IfaceStatus("veth9", None, None, "interface disappeared")
    d = FlowsData(**base, tcp_events_error="TCP events unavailable: tracefs is not mounted", ifaces=(gone,))
    everything = FlowsCollector()
    assert (
        everything.degraded_reason(d) == "TCP events unavailable: tracefs is not mounted"
    )  # churn is not a fault
    requested = FlowsCollector(["veth9"])
    assert requested.degraded_reason(d).startswith("veth9: interface disappeared; TCP events unavailable")
    ok = FlowsData(**base, tcp_events_error=None, ifaces=(IfaceStatus("eth0", 2, "tcx"),))
    assert requested.degraded_reason(ok) == ""


def test_compile_failure_reports_the_compiler_message(monkeypatch, tmp_path):
    from conftest import need_root

    need_root()
    from ebpftop.collectors.flows import collector, loader

    broken = tmp_path / "flows.bpf.c"
    broken.write_text("int ebpftop_fl_in(struct __sk_buff *skb) { return undefined_thing; }\n")
    monkeypatch.setattr(loader, "FLOWS_SRC", broken)
    monkeypatch.setattr(collector.tclegacy, "stale_filters", lambda: [])
    c = collector.FlowsCollector(["lo"], tcp_events=False)
    with pytest.raises(SourceUnavailable) as info:
        c._start_sync()
    assert "failed to compile" in info.value.message
    assert "undefined_thing" in info.value.message  # clang's words, not a bare "failed"
    assert c.dp is None


# --- the collector's tick over a datapath stand-in ---------------------------------------


class _Datapath:
    """What FlowsCollector._sample needs of FlowsDatapath, with the map in a dict."""

    def __init__(self):
        from ebpftop.collectors.flows.loader import Attachment

        self.attachments = {"veth9": Attachment("veth9", 9, "tcx", [])}
        self.deleted = 0
        self.map: dict[bytes, tuple[int, int, int, int]] = {}

    def counters_total(self):
        return [len(self.map) + self.deleted, 0, 0, 0]

    def read(self):
        return FlowTable.from_rows(dict(self.map))

    def delete(self, keys):
        for k in keys:
            del self.map[k]
        self.deleted += len(keys)
        return len(keys)


def _udp_key(sport, dport, ingress=True):
    import socket

    a, b = socket.inet_aton("10.9.0.2") + bytes(12), socket.inet_aton("10.9.0.1") + bytes(12)
    return FLOW_KEY.pack(a, b, 9, sport, dport, 17, 4, 0 if ingress else 1)


def test_collector_tick_ranks_rates_totals_and_expires(monkeypatch):
    from ebpftop.collectors.flows import collector

    clock = [1000 * S]
    monkeypatch.setattr(collector.time, "monotonic_ns", lambda: clock[0])
    monkeypatch.setattr(collector.kclock, "calibration", lambda: (S, 0, 0))  # HZ = 1e9: a jiffy is a ns here
    monkeypatch.setattr(collector, "ifindex_of", lambda name: 9)
    c = collector.FlowsCollector(
        ["veth9"],
        top_n=2,
        tcp_events=False,
        idle_expiry=300,
        attributor=Attributor(finder=TableFinder(lambda: []), identities=Names()),
    )
    c.dp = dp = _Datapath()
    slow, fast, mid, old = _udp_key(1, 10), _udp_key(2, 20), _udp_key(3, 30), _udp_key(4, 40)
    dp.map = {
        slow: (1, 100, 999 * S, 999 * S),
        fast: (1, 100, 999 * S, 999 * S),
        mid: (1, 100, 999 * S, 999 * S),
        old: (5, 500, 600 * S, 701 * S),
    }
    first = c._sample()
    assert first.total_bps is None and first.flows_tracked == 4 and all(f.bps is None for f in first.flows)
    clock[0] += 2 * S  # 1002 s: `old` was last seen 301 s ago (idle expiry 300 s) -> deleted
    dp.map.update(
        {
            slow: (2, 200, 999 * S, 1001 * S),
            fast: (21, 2100, 999 * S, 1001 * S),
            mid: (6, 600, 999 * S, 1001 * S),
        }
    )
    second = c._sample()
    assert old not in dp.map and dp.deleted == 1 and second.flows_tracked == 3
    assert [(f.dport, f.bps, f.pps) for f in second.flows] == [
        (20, 1000.0, 10.0),
        (30, 250.0, 2.5),
    ]  # top 2 of 3
    assert (second.total_bps, second.total_pps) == (1300.0, 13.0)
    assert (second.total_bytes, second.total_packets) == (2900, 29)
    # a flow re-created since the last tick (new first seen) moved all it has
    clock[0] += 1 * S
    dp.map[slow] = (3, 9000, 1002 * S + 5, 1003 * S)
    third = c._sample()
    assert [(f.dport, f.bps) for f in third.flows] == [(10, 9000.0), (20, 0.0)]


def test_collector_keeps_attribution_per_flow_until_the_attributor_changes(monkeypatch):
    from ebpftop.collectors.flows import collector

    clock = [1000 * S]
    now = [0.0]
    sockets: list = []
    scans = []

    def conns():
        scans.append(now[0])
        return list(sockets)

    monkeypatch.setattr(collector.time, "monotonic_ns", lambda: clock[0])
    monkeypatch.setattr(collector.kclock, "calibration", lambda: (S, 0, 0))  # HZ = 1e9: a jiffy is a ns here
    monkeypatch.setattr(collector, "ifindex_of", lambda name: 9)
    a = Attributor(
        refresh=5, miss_retry=60, clock=lambda: now[0], finder=TableFinder(conns), identities=Names()
    )
    c = collector.FlowsCollector(["veth9"], tcp_events=False, attributor=a)
    c.dp = dp = _Datapath()
    k = _udp_key(5353, 5353)
    dp.map = {k: (1, 100, 999 * S, 999 * S)}
    assert c._sample().flows[0].pid is None and scans == [0.0]
    sockets.append(_conn(("10.9.0.1", 5353), None, 77))  # bound after the scan
    for t in (10.0, 30.0, 59.0):  # a kept miss: no scan, still unowned
        now[0] = t
        assert c._sample().flows[0].pid is None
    assert scans == [0.0]
    now[0] = 61.0  # miss_retry passed: asked again, found
    rec = c._sample().flows[0]
    assert (rec.pid, rec.comm) == (77, "proc77") and scans == [0.0, 61.0]
    sockets.clear()
    now[0] = 70.0  # the answer is kept while nothing changes the attributor's tables
    assert c._sample().flows[0].pid == 77 and scans == [0.0, 61.0]
    dp.map[_udp_key(6000, 6000)] = (1, 100, 999 * S, 999 * S)  # a new unowned flow: a scan, a new generation
    # the tick asks for both flows' sockets in one batch before placing any: the walk it
    # makes finds 5353's socket gone
    recs = {f.dport: f.pid for f in c._sample().flows}
    assert recs == {5353: None, 6000: None} and scans == [0.0, 61.0, 70.0]
    now[0] = 71.0
    assert {f.dport: f.pid for f in c._sample().flows} == {5353: None, 6000: None} and len(scans) == 3


def test_collector_turns_the_maps_jiffies_into_wall_clock_times(monkeypatch):
    from ebpftop.collectors.flows import collector

    j0 = 4_294_967_296  # jiffies start near 2^32 - 5 min and wrap past 32 bits: use big values
    monkeypatch.setattr(
        collector.kclock, "calibration", lambda: (250, j0, 10 * S)
    )  # HZ=250, jiffies j0 at mono 10 s
    monkeypatch.setattr(collector.time, "monotonic_ns", lambda: 12 * S)
    monkeypatch.setattr(collector.time, "time", lambda: 1_000_000.0)  # wall time at mono 12 s
    monkeypatch.setattr(collector, "ifindex_of", lambda name: 9)
    c = collector.FlowsCollector(
        ["veth9"], tcp_events=False, attributor=Attributor(finder=TableFinder(lambda: []), identities=Names())
    )
    c.dp = dp = _Datapath()
    dp.map = {_udp_key(1, 2): (1, 100, j0 + 125, j0 + 450)}  # mono 10.5 s and 11.8 s
    f = c._sample().flows[0]
    assert f.first_seen == pytest.approx(1_000_000.0 - 1.5) and f.last_seen == pytest.approx(
        1_000_000.0 - 0.2
    )


def test_collect_runs_short_ticks_on_the_event_loop_and_long_ones_in_a_thread(monkeypatch):
    import threading

    from ebpftop.collectors.flows import collector

    c = collector.FlowsCollector(["veth9"], tcp_events=False)
    c.dp = _Datapath()
    took = iter([0.0001, 0.0001, 0.050, 0.0001])
    ran_on = []
    clock = [0.0]

    def tick():
        ran_on.append(threading.get_ident())
        clock[0] += next(took)
        return "data"

    monkeypatch.setattr(c, "_sample", tick)
    monkeypatch.setattr(collector.time, "perf_counter", lambda: clock[0])

    async def ticks():
        return threading.get_ident(), [await c.collect() for _ in range(4)]

    loop_thread, got = asyncio.run(ticks())
    assert got == ["data"] * 4
    # first tick: nothing known yet -> thread; then short -> loop; short -> loop; 50 ms -> thread
    assert [t == loop_thread for t in ran_on] == [False, True, True, False]


def test_attribution_puts_off_a_scan_while_on_the_event_loop():
    now = [10.0]
    calls = []
    sockets = [_conn(("10.0.0.1", 5000), ("192.0.2.1", 443), 42)]
    a = Attributor(
        refresh=5,
        clock=lambda: now[0],
        finder=TableFinder(lambda: (calls.append(now[0]), sockets)[1]),
        identities=Names(),
    )
    t = ("10.0.0.1", 5000, "192.0.2.1", 443)
    a.defer_scans = True
    assert a.owner(t, None) is None and calls == [] and a.scan_wanted
    assert a.owner(t, (7, "curl")) == (7, "curl")  # the kernel's answer needs no scan, deferred or not
    gen = a.generation
    a.defer_scans = False
    a.run_deferred_scan()
    assert calls == [10.0] and not a.scan_wanted and a.generation > gen
    assert a.owner(t, None) == (42, None)  # put off, not recorded as a miss
    # on the loop a lookup is put off even when no walk is due (it enters namespaces in a
    # thread); answered by the deferred run without a walk, as a miss
    a.defer_scans = True
    now[0] = 11.0
    miss = ("10.0.0.1", 1, "192.0.2.5", 2)
    assert a.owner(miss, None) is None and a.scan_wanted and calls == [10.0]
    a.defer_scans = False
    a.run_deferred_scan()
    assert a.owner(miss, None) is None and calls == [10.0]
    gen = a.generation
    a.run_deferred_scan()  # nothing owed: nothing done
    assert a.generation == gen and calls == [10.0]


def test_a_tick_on_the_event_loop_never_walks_proc(monkeypatch):
    """A short tick runs on the loop; if it meets a new unowned flow the /proc walk is put
    off to the next tick, which runs in a thread and answers it."""
    import threading

    from ebpftop.collectors.flows import collector

    monkeypatch.setattr(collector.time, "monotonic_ns", lambda: 1000 * S)
    monkeypatch.setattr(collector.kclock, "calibration", lambda: (S, 0, 0))
    monkeypatch.setattr(collector, "ifindex_of", lambda name: 9)
    monkeypatch.setattr(collector, "INLINE_S", 3600.0)  # every tick counts as short
    now = [0.0]
    scanned_on = []
    sockets = []

    def conns():
        scanned_on.append(threading.get_ident())
        return list(sockets)

    a = Attributor(refresh=5, clock=lambda: now[0], finder=TableFinder(conns), identities=Names())
    c = collector.FlowsCollector(["veth9"], tcp_events=False, attributor=a)
    c.dp = dp = _Datapath()
    dp.map = {_udp_key(5353, 5353): (1, 100, 999 * S, 999 * S)}

    async def ticks():
        loop_thread = threading.get_ident()
        first = await c.collect()  # nothing timed yet: a thread, which scans
        now[0] = 10.0
        sockets.append(_conn(("10.9.0.1", 6000), None, 88))  # bound after the first scan
        dp.map[_udp_key(6000, 6000)] = (1, 100, 999 * S, 999 * S)  # a new flow no table has yet
        second = await c.collect()  # short: on the loop, the scan put off
        third = await c.collect()  # a scan is owed: in a thread
        return loop_thread, first, second, third

    loop_thread, _, second, third = asyncio.run(ticks())
    assert len(scanned_on) == 2 and loop_thread not in scanned_on
    assert {f.dport: f.pid for f in second.flows} == {5353: None, 6000: None}
    assert {f.dport: f.pid for f in third.flows} == {5353: None, 6000: 88}
