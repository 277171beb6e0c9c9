"""Monotonic flow counters from top-N snapshots, worked out at scrape time.

A flows snapshot holds the top N connections with their totals since each was first
seen; a connection leaves the top N and comes back. Counters must never go down, so
each scrape walks the flows snapshots the store holds since the previous scrape (its
bounded history: nothing is done per flow on the bus path) and adds, per connection,
what its totals grew by since it was last seen to its owner's label set:

- a connection met for the first time counts whole when it began after the previous
  look (`first_seen`), else its first appearance since sets its baseline: what it moved
  while nobody looked is not counted (an undercount, never a double count), nor what
  fell out of the store's history (`settings.history` snapshots: 5 min at 1 Hz) before
  a scrape came;
- the last totals of at most MAX_TRACKED_FLOWS connections are kept, least recently
  seen dropped first; a dropped one that comes back is met for the first time again;
- totals that went down (the 5-tuple reused by a new connection) count from zero.

Owners (who the local end is: service, namespace, pod, unit, or the process name when
nothing else is known) hold one of MAX_OWNERS slots; a new owner takes a free slot or
the slot of one idle for OWNER_IDLE_S (whose series then vanish), else it is counted
under service="other". Connect latency and failures come from the TCP events each
snapshot carries (the last 100), newer than the last one counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ebpftop.collectors.flows.model import FlowRecord, FlowsData
from ebpftop.collectors.identity.model import Identity
from ebpftop.core.model import Snapshot

from .bounds import LATENCY_BUCKETS, MAX_OWNERS, MAX_TRACKED_FLOWS, OTHER, OWNER_IDLE_S, PROTOS, label

Owner = tuple[str, str, str, str, str]  # service, namespace, pod, unit, comm
OWNER_LABELS = ("service", "namespace", "pod", "unit", "comm")
UNOWNED: Owner = ("", "", "", "", "")
OVERFLOW: Owner = (OTHER, "", "", "", "")
FlowKey = tuple[str, str, int, str, int]
Ways = tuple[int, int, int, int]  # receive bytes, transmit bytes, receive packets, transmit packets
ZERO = (0, 0, 0, 0, 0)  # ways and retransmits of a connection counted from its start


def owner_of(ident: Identity | None, comm: str | None = None) -> Owner:
    """The local end's owner labels. A pod names it without its unit (one container
    scope per container would multiply the series); a bare process by its name (the
    record's or event's own `comm` when the flows payload did not look the pid up)."""
    if ident is None:
        return ("", "", "", "", label(comm, 16)) if comm else UNOWNED
    service = label(ident.service) if ident.service else ""
    namespace = label(ident.namespace) if ident.namespace else ""
    pod = label(ident.pod) if ident.pod else ""
    unit = "" if pod or not ident.unit else label(ident.unit)
    comm = "" if service or pod or unit or not ident.comm else label(ident.comm, 16)
    return (service, namespace, pod, unit, comm)


def ways(rec: FlowRecord) -> Ways:
    """Bytes and packets each way from this host's side: each way as the most any hook
    saw of it (as the record counts), the record's first packet going out on egress."""
    paths = rec.paths
    if paths:
        fb = rb = fp = rp = 0
        for p in paths:
            if p.forward:
                fb, fp = max(fb, p.bytes), max(fp, p.packets)
            else:
                rb, rp = max(rb, p.bytes), max(rp, p.packets)
    else:
        fb, rb, fp, rp = rec.bytes, 0, rec.packets, 0
    if rec.direction == "egress":
        return rb, fb, rp, fp
    return fb, rb, fp, rp


def proto_label(proto: str) -> str:
    return proto if proto in PROTOS else OTHER


@dataclass
class OwnerCounts:
    receive: dict[str, list[int]] = field(default_factory=dict)  # proto -> [bytes, packets]
    transmit: dict[str, list[int]] = field(default_factory=dict)
    retransmits: int = 0
    connect_failures: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    last_active: float = 0.0


class FlowCounters:
    """Counters per owner, fed by `update(history)` under the caller's lock."""

    def __init__(self, since: float) -> None:
        self._since = since  # wall time of the last snapshot looked at (or of the start)
        self._event_mark = since  # time of the newest TCP event counted
        self._last: dict[FlowKey, tuple[int, ...]] = {}  # insertion order: least recently met first
        self.owners: dict[Owner, OwnerCounts] = {}

    def update(self, history: Iterable[Snapshot]) -> FlowsData | None:
        """Count the flows snapshots newer than the last one looked at; return the
        newest. Totals only grow, so what a connection did since the last look is its
        newest appearance less its baseline (its totals at the last look, else at its
        first appearance since, else zero when it began since): one dict update per
        record, the arithmetic once per connection."""
        fresh = [s for s in history if s.time > self._since and isinstance(s.data, FlowsData)]
        if not fresh:
            return None
        last = self._last
        newest: dict[FlowKey, tuple[FlowRecord, FlowsData, float]] = {}
        first: dict[FlowKey, FlowRecord] = {}
        for snap in fresh:
            data: FlowsData = snap.data
            for rec in data.flows:
                key = (rec.proto, rec.src, rec.sport, rec.dst, rec.dport)
                if key not in newest and key not in last:
                    first[key] = rec
                newest[key] = (rec, data, snap.time)
        self._count(newest, first)
        for snap in fresh:  # oldest first: the events' mark only moves forward
            self._count_events(snap.data, snap.time)
        self._since = fresh[-1].time
        while len(last) > MAX_TRACKED_FLOWS:
            del last[next(iter(last))]
        return fresh[-1].data  # type: ignore[no-any-return]

    def _slot(self, owner: Owner, now: float) -> OwnerCounts:
        counts = self.owners.get(owner)
        if counts is None:
            if len(self.owners) >= MAX_OWNERS + (OVERFLOW in self.owners):
                idle = [
                    (c.last_active, o)
                    for o, c in self.owners.items()
                    if o != OVERFLOW and now - c.last_active >= OWNER_IDLE_S
                ]
                if not idle:
                    owner = OVERFLOW
                else:
                    del self.owners[min(idle)[1]]
            counts = self.owners.get(owner)
            if counts is None:
                counts = self.owners[owner] = OwnerCounts()
        return counts

    def _count(
        self, newest: dict[FlowKey, tuple[FlowRecord, FlowsData, float]], first: dict[FlowKey, FlowRecord]
    ) -> None:
        last, since = self._last, self._since
        resolved: dict[tuple[int, int | None, str | None], OwnerCounts] = {}
        for key, (rec, data, now) in newest.items():
            cur = (*ways(rec), rec.retransmits)
            prev = last.pop(key, None)  # popped and put back: the least recently met stay first
            last[key] = cur
            if prev is None:
                start = first[key]
                prev = ZERO if start.first_seen > since else (*ways(start), start.retransmits)
            if cur == prev:
                continue
            if cur[0] < prev[0] or cur[1] < prev[1] or cur[2] < prev[2] or cur[3] < prev[3]:
                prev = ZERO  # the 5-tuple of a new connection
            who = (id(data), rec.pid, rec.comm)
            counts = resolved.get(who)
            if counts is None:
                counts = resolved[who] = self._slot(owner_of(data.identity(rec.pid), rec.comm), now)
            counts.last_active = max(counts.last_active, now)
            proto = proto_label(rec.proto)
            rx = counts.receive.setdefault(proto, [0, 0])
            tx = counts.transmit.setdefault(proto, [0, 0])
            rx[0] += cur[0] - prev[0]
            tx[0] += cur[1] - prev[1]
            rx[1] += cur[2] - prev[2]
            tx[1] += cur[3] - prev[3]
            counts.retransmits += max(0, cur[4] - prev[4])

    def _count_events(self, data: FlowsData, now: float) -> None:
        mark = self._event_mark
        for ev in data.recent_events:
            if ev.time <= self._event_mark or ev.kind not in ("connect", "connect_fail"):
                continue
            mark = max(mark, ev.time)
            counts = self._slot(owner_of(data.identity(ev.pid), ev.comm), now)
            counts.last_active = now
            if ev.kind == "connect_fail":
                counts.connect_failures += 1
            elif ev.ms is not None:
                seconds = ev.ms / 1000.0
                counts.latency_count += 1
                counts.latency_sum += seconds
                for i, le in enumerate(LATENCY_BUCKETS):
                    if seconds <= le:
                        counts.buckets[i] += 1
                        break
        self._event_mark = mark


def top_peers(data: FlowsData, n: int) -> tuple[list[tuple[str, float, int]], tuple[float, int]]:
    """(peer, bytes/s, connections) of the n busiest remote addresses by current rate
    (total bytes breaking ties), and the rest summed: the peers' set changes every
    tick, so these are gauges of the present, not counters."""
    by_peer: dict[str, list[float]] = {}
    for rec in data.flows:
        peer = rec.local_remote()[2]
        row = by_peer.setdefault(peer, [0.0, 0.0, 0.0])
        row[0] += rec.bps or 0.0
        row[1] += rec.bytes
        row[2] += 1
    ranked = sorted(by_peer.items(), key=lambda kv: (kv[1][0], kv[1][1]), reverse=True)
    top = [(label(peer), row[0], int(row[2])) for peer, row in ranked[:n]]
    rest = ranked[n:]
    return top, (sum(r[0] for _, r in rest), int(sum(r[2] for _, r in rest)))
