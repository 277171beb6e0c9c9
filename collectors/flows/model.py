"""The flows payload: what `ebpftop snapshot --json` and the flows pane carry.

Units: bytes are link-layer frames as TC sees them (Ethernet header + IP packet, no
FCS or preamble; devices without a link layer count from the IP header), with a
GSO/GRO super-packet counted as the wire packets it stands for. `bps` is BYTES per
second, `pps` packets per second. Times are wall-clock seconds. A value that is not
known is None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ebpftop.core.model import register_payload


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
class FlowRecord:
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
    iface,
    direction,
    proto,
    src,
    sport,
    dst,
    dport,
    packets,
    bytes,
    bps,
    pps,
    first_seen,
    last_seen,
    retransmits,
    connect_latency_ms,
    pid,
    comm,
    service,
    events,
) -> FlowRecord:
    """FlowRecord(...) for the collector's hot loop (hundreds a tick): a frozen
    dataclass's __init__ sets each of the 19 fields through object.__setattr__, which is
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
    return rec


@dataclass(frozen=True)
class IfaceStatus:
    name: str
    ifindex: int | None
    mode: str | None  # "tcx" | "tc" (netlink clsact) | None when not attached
    error: str | None = None  # why it is not attached, or what went wrong since


@dataclass(frozen=True)
class FlowsData:
    flows: tuple[FlowRecord, ...]  # top N by current rate (then total bytes)
    # totals over every flow in the kernel map, not just the top N
    flows_tracked: int
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

    @property
    def attached(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.ifaces if i.mode is not None and i.error is None)


register_payload("flows", FlowsData)
