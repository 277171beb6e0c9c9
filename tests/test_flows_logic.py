"""Pure logic of the flows source: rate maths, the filter language, sort and group,
service names, the payload's JSON round trip, and how the collector degrades."""

from __future__ import annotations

import asyncio
import ctypes
import json
from types import SimpleNamespace

import pytest

from ebpftop.collectors.base import SourceUnavailable
from ebpftop.collectors.flows import filter as flt
from ebpftop.collectors.flows import rates, view
from ebpftop.collectors.flows.attribution import Attributor, service_from_environ
from ebpftop.collectors.flows.layout import FLOW_KEY, FLOW_VAL, TCP_EVENT, TCP_TUPLE, decode_key
from ebpftop.collectors.flows.model import FlowRecord, FlowsData, IfaceStatus, TcpEvent
from ebpftop.collectors.model import Health, Snapshot, from_json, to_json


def rec(**kw) -> FlowRecord:
    base = dict(iface="eth0", direction="egress", proto="tcp", src="10.0.0.1", sport=40000, dst="192.0.2.9",
                dport=443, packets=10, bytes=1000, bps=100.0, pps=1.0, first_seen=1.0, last_seen=2.0)
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


def test_all_rates_and_totals():
    prev = {b"a": (1, 100, 0, 0)}
    cur = {b"a": (3, 300, 0, 0), b"b": (1, 50, 5 * S, 5 * S), b"c": (1, 1, 1, 1)}
    r = rates.all_rates(prev, cur, 4 * S, 6 * S)
    assert r == {b"a": (100.0, 1.0), b"b": (25.0, 0.5), b"c": (None, None)}
    assert rates.total_rate(r, True) == (125.0, 1.5)
    assert rates.total_rate(r, False) == (None, None)
    assert rates.total_rate({}, True) == (0, 0)
    assert rates.total_rate({b"c": (None, None)}, True) == (None, None)


def test_all_rates_agrees_with_flow_rate_on_every_case():
    # all_rates inlines flow_rate for speed; both must say the same for every kind of entry
    prev = {b"same": (10, 1000, 5, 6), b"recreated": (100, 100_000, 1 * S, 9 * S),
            b"missed": (100, 100_000, 1 * S, 9 * S), b"shrunk": (10, 1000, 5, 6)}
    cur = {b"same": (30, 4000, 5, 9), b"recreated": (2, 300, 11 * S, 11 * S),
           b"missed": (2, 300, 9 * S + 1, 11 * S), b"shrunk": (5, 500, 5, 9),
           b"born": (4, 400, 11 * S, 11 * S), b"unseen": (4, 400, 9 * S, 11 * S)}
    for prev_ns, now_ns in ((10 * S, 13 * S), (None, 13 * S), (13 * S, 13 * S)):
        want = {k: rates.flow_rate(prev.get(k), v, prev_ns, now_ns) for k, v in cur.items()}
        assert rates.all_rates(prev, cur, prev_ns, now_ns) == want
    assert len({v for v in rates.all_rates(prev, cur, 10 * S, 13 * S).values()}) > 3  # the cases differ


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
        ("nginx [1]", 2, 150, 10.0, 1), ("curl [2]", 1, 10, 5.0, 0), ("(unknown process)", 1, 1000, 1.0, 0)]
    assert [g.key for g in view.group_flows(flows, "service")] == ["web", "(no service)"]
    # remote address is the far side whichever the direction
    assert {g.key for g in view.group_flows(flows, "remote")} == {"192.0.2.9", "192.0.2.1", "198.51.100.7"}
    with pytest.raises(ValueError):
        view.group_flows(flows, "colour")


# --- attribution ------------------------------------------------------------------------


def test_service_name_from_otel_environment():
    assert service_from_environ({"OTEL_SERVICE_NAME": "checkout"}) == "checkout"
    assert service_from_environ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name = cart"}) == "cart"
    both = {"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b"}
    assert service_from_environ(both) == "a"
    assert service_from_environ({"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=x"}) is None
    assert service_from_environ({}) is None


def _conn(l, r, pid):
    addr = lambda t: SimpleNamespace(ip=t[0], port=t[1]) if t else ()  # noqa: E731
    return SimpleNamespace(laddr=addr(l), raddr=addr(r), pid=pid)


def test_attribution_prefers_the_kernel_then_the_socket_table():
    now = [0.0]
    calls = []

    def conns():
        calls.append(now[0])
        return [_conn(("10.0.0.1", 5000), ("192.0.2.1", 443), 42), _conn(("0.0.0.0", 8080), None, 43)]

    a = Attributor(refresh=5, clock=lambda: now[0], connections=conns, environ=lambda pid: {})
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
    for t in (("10.0.0.1", 1, "192.0.2.5", 2), ("10.0.0.1", 3, "192.0.2.5", 4), ("10.0.0.1", 5, "192.0.2.5", 6)):
        assert a.owner(t, None) is None
    assert calls == [0.0, 6.0]
    # a miss is retried after miss_retry (60 s): a socket bound since is found
    late = [_conn(("10.0.0.1", 1), ("192.0.2.5", 2), 44)]
    a._connections = lambda: (calls.append(now[0]), late)[1]
    now[0] = 59.0
    assert a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None) is None and calls == [0.0, 6.0]
    now[0] = 61.0
    assert a.owner(("10.0.0.1", 1, "192.0.2.5", 2), None) == (44, None)
    assert calls == [0.0, 6.0, 61.0]


# --- payload ----------------------------------------------------------------------------


def test_flow_record_fast_constructor_makes_the_same_frozen_record():
    import dataclasses

    from ebpftop.collectors.flows.model import FLOW_FIELDS, flow_record

    full = rec(events=(), connect_latency_ms=0.25, pid=7, comm="curl", service="web")
    values = tuple(getattr(full, f) for f in FLOW_FIELDS)
    fast = flow_record(*values)
    assert fast == full and hash(fast) == hash(full) and type(fast) is type(full)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.bytes = 0
    with pytest.raises(TypeError, match="takes 19 values"):
        flow_record(*values[:-1])


def test_payload_round_trips_through_snapshot_json():
    ev = TcpEvent(1.5, "connect", "10.0.0.1", 40000, "192.0.2.9", 443, ms=0.25, pid=7, comm="curl")
    data = FlowsData(
        flows=(rec(events=(ev,), connect_latency_ms=0.25, pid=7, comm="curl\x1b[31m", service=None, bps=None),),
        flows_tracked=3, total_bytes=10, total_packets=2, total_bps=None, total_pps=None,
        evictions=0, update_failures=0, not_ip_packets=1, truncated_packets=0,
        events_total=None, lost_events=None, tcp_events_error="TCP events unavailable: x",
        recent_events=(ev,), ifaces=(IfaceStatus("eth0", 2, "tcx"), IfaceStatus("gone0", None, None, "interface disappeared")),
        notices=("removed a tc filter",), max_flows=1024,
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
    raw = FLOW_KEY.pack(bytes([10, 0, 0, 1]) + bytes(12), bytes([192, 0, 2, 9]) + bytes(12), 3, 40000, 443, 6, 4, 1)
    assert decode_key(raw) == ("10.0.0.1", 40000, "192.0.2.9", 443, 3, "egress", 6)
    v6 = FLOW_KEY.pack(bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1]), 1, 1, 2, 17, 6, 0)
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

    base = dict(flows=(), flows_tracked=0, total_bytes=0, total_packets=0, total_bps=None, total_pps=None,
                evictions=0, update_failures=0, not_ip_packets=0, truncated_packets=0, events_total=None,
                lost_events=None, recent_events=())
    gone = IfaceStatus("veth9", None, None, "interface disappeared")
    d = FlowsData(**base, tcp_events_error="TCP events unavailable: tracefs is not mounted", ifaces=(gone,))
    everything = FlowsCollector()
    assert everything.degraded_reason(d) == "TCP events unavailable: tracefs is not mounted"  # churn is not a fault
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
