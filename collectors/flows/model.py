"""The flows payload: what `ebpftop snapshot --json` and the flows pane carry, and its
alarms (a drop counter of the datapath that is growing).

One record is one connection (collectors/flows/connections.py): the kernel counts per
5-tuple, interface hook and direction, and the collector merges those entries. A
record's figures count each packet once (a way's packets seen on several hooks count
as the most any hook saw), both ways together; `paths` keeps what each hook saw.

Units: bytes are link-layer frames as TC sees them (Ethernet header + IP packet, no
FCS or preamble; devices without a link layer count from the IP header), with a
GSO/GRO super-packet counted as the wire packets it stands for. `bps` is BYTES per
second, `pps` packets per second. Times are wall-clock seconds. A value that is not
known is None, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ebpftop.collectors.identity.model import Identity
from ebpftop.core.alarms import Alarm, Severity, register_alarms
from ebpftop.core.model import Snapshot, register_payload


@dataclass(frozen=True)
class TcpEvent:
    time: float
    kind: str  # "connect", "connect_fail", "accept", "close", "retransmit"
    src: str  # the local side for connect/close (as the socket sees it)
    sport: int
    dst: str
    dport: int
    ms: float | None = None  # connect latency, time to failure, or connection duration
    pid: int | None = None
    comm: str | None = None


@dataclass(frozen=True)
class FlowPath:
    """One interface hook that saw a connection, and what it counted there."""

    iface: str
    direction: str  # "ingress" | "egress" at this interface
    forward: bool  # its packets go the record's src -> dst (False: dst -> src)
    packets: int
    bytes: int
    bps: float | None
    pps: float | None


@dataclass(frozen=True)
class FlowRecord:
    """One connection: src:sport is the end that sent the first packet seen (else the
    higher port); iface and direction are where that packet was first seen."""

    iface: str
    direction: str  # "ingress" | "egress"
    proto: str  # "tcp", "udp", "icmp", "icmp6", "sctp" or the protocol number
    src: str
    sport: int  # for ICMP: the type
    dst: str
    dport: int  # for ICMP: the code
    packets: int
    bytes: int
    bps: float | None  # bytes/s over the last tick; None until there are two samples
    pps: float | None
    first_seen: float
    last_seen: float
    retransmits: int = 0
    connect_latency_ms: float | None = None
    pid: int | None = None
    comm: str | None = None
    service: str | None = None
    events: tuple[TcpEvent, ...] = ()  # this connection's recent TCP events, oldest first
    paths: tuple[FlowPath, ...] = ()  # every hook that saw it (one: seen once)
    closed: bool = False  # its socket's last TCP event is a close (or a failed connect)
    # the process at the other end when that end is a socket on this node too (another
    # namespace, loopback); pid is then this end's
    peer_pid: int | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.src else 4

    def local_remote(self) -> tuple[str, int, str, int]:
        """(local addr, local port, remote addr, remote port) from this host's side."""
        if self.direction == "egress":
            return self.src, self.sport, self.dst, self.dport
        return self.dst, self.dport, self.src, self.sport


FLOW_FIELDS = tuple(FlowRecord.__dataclass_fields__)
_new = object.__new__


def flow_record(
    iface: str,
    direction: str,
    proto: str,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    packets: int,
    bytes: int,
    bps: float | None,
    pps: float | None,
    first_seen: float,
    last_seen: float,
    retransmits: int,
    connect_latency_ms: float | None,
    pid: int | None,
    comm: str | None,
    service: str | None,
    events: tuple[TcpEvent, ...],
    paths: tuple[FlowPath, ...],
    closed: bool,
    peer_pid: int | None,
) -> FlowRecord:
    """FlowRecord(...) for the collector's hot loop (hundreds a tick): a frozen
    dataclass's __init__ sets each of the 22 fields through object.__setattr__, which is
    most of its cost. Every field must be given, in declaration order (a test holds the
    parameters to FLOW_FIELDS)."""
    rec = _new(FlowRecord)
    d = rec.__dict__
    d["iface"], d["direction"], d["proto"], d["src"], d["sport"], d["dst"], d["dport"] = (
        iface,
        direction,
        proto,
        src,
        sport,
        dst,
        dport,
    )
    d["packets"], d["bytes"], d["bps"], d["pps"], d["first_seen"], d["last_seen"] = (
        packets,
        bytes,
        bps,
        pps,
        first_seen,
        last_seen,
    )
    d["retransmits"], d["connect_latency_ms"], d["pid"], d["comm"], d["service"], d["events"] = (
        retransmits,
        connect_latency_ms,
        pid,
        comm,
        service,
        events,
    )
    d["paths"], d["closed"], d["peer_pid"] = paths, closed, peer_pid
    return rec


@dataclass(frozen=True)
class IfaceStatus:
    name: str
    ifindex: int | None
    mode: str | None  # "tcx" | "tc" (netlink clsact) | None when not attached
    error: str | None = None  # why it is not attached, or what went wrong since


@dataclass(frozen=True)
class FlowsData:
    flows: tuple[FlowRecord, ...]  # top N connections by current rate (then total bytes)
    # totals over every connection in the kernel map, not just the top N, each packet once
    flows_tracked: int  # connections (the map holds an entry per hook and way: map_entries)
    total_bytes: int
    total_packets: int
    total_bps: float | None
    total_pps: float | None
    # the datapath's own bookkeeping: never silent about what it could not count
    evictions: int  # flows pushed out of the LRU map by newer ones
    update_failures: int  # new flows the kernel could not insert
    not_ip_packets: int
    truncated_packets: int
    # TCP events (ring buffer); None when the TCP tracepoints are not attached
    events_total: int | None
    lost_events: int | None
    tcp_events_error: str | None
    recent_events: tuple[TcpEvent, ...] = field(default_factory=tuple)
    ifaces: tuple[IfaceStatus, ...] = field(default_factory=tuple)
    notices: tuple[str, ...] = field(default_factory=tuple)  # e.g. leftovers removed at start
    max_flows: int = 0
    map_entries: int | None = None  # entries in the kernel map (None: recorded before it was kept)
    # who the records' pid and peer_pid are (each process once, not per flow)
    owners: tuple[Identity, ...] = field(default_factory=tuple)
    namespaces: int | None = None  # network namespaces with sockets on this node (None: not looked)

    def identity(self, pid: int | None) -> Identity | None:
        if pid is None:
            return None
        index = self.__dict__.get("_owners")
        if index is None:  # frozen: a cache in the instance dict, built on first use
            index = {o.pid: o for o in self.owners}
            object.__setattr__(self, "_owners", index)
        return index.get(pid)

    @property
    def attached(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.ifaces if i.mode is not None and i.error is None)


register_payload("flows", FlowsData)


# --- alarms ---------------------------------------------------------------------------

COUNTERS: tuple[tuple[str, str, Severity], ...] = (
    # What the datapath could not count: (field, label, severity while growing).
    ("evictions", "evicted", "warning"),
    ("update_failures", "not recorded", "error"),
    ("truncated_packets", "truncated", "warning"),
    ("lost_events", "TCP events lost", "warning"),
)
GROWING_FOR = 30.0  # seconds: a counter that grew this recently is "growing"


def count_text(x: float) -> str:
    """Packets (per second): 0.5, 3910, 12.3k, 123k."""
    if 0 < abs(x) < 10 and not float(x).is_integer():
        return f"{x:.1f}"
    n = round(x)
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= div * 10:
            v = n / div
            return f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return str(n)


def flows_alarms(latest: Snapshot, history: Sequence[Snapshot]) -> list[Alarm]:
    """A drop counter that grew in the `GROWING_FOR` seconds before the latest sample,
    with how much it grew by. The counters only rise while the collector runs, so a fall
    (a restart, a replay stepping back) starts the count again."""
    data = latest.data
    if not isinstance(data, FlowsData):
        return []
    samples = [s for s in history if isinstance(s.data, FlowsData)]
    if not samples or samples[-1] is not latest:
        samples.append(latest)
    out: list[Alarm] = []
    for name, label, severity in COUNTERS:
        prev, grew_at, by = 0, None, 0
        for sample in samples:
            value = getattr(sample.data, name)
            if value is None:  # not measured then (TCP events off): proves nothing
                continue
            if value < prev:
                grew_at, by = None, 0
            elif value > prev:
                grew_at, by = sample.time, value - prev
            prev = value
        value = getattr(data, name)
        if value and grew_at is not None and latest.time - grew_at <= GROWING_FOR:
            text = f"flows: {label} {count_text(value)} (+{count_text(by)})"
            detail = {"counter": name, "label": label, "value": value, "grew_by": by, "grew_at": grew_at}
            out.append(Alarm(latest.source, severity, text, "counter_growing", detail))
    return out


register_alarms("flows", flows_alarms)
