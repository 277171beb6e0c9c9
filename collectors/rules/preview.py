"""What a rule means in words, and what it would have matched in the recent flows.

The Rules pane shows these before a change is confirmed ("this deny would drop: ..."),
so the pane itself stays a thin view. Matching here follows the kernel's semantics
(first match wins, `icmp` covers ICMP and ICMPv6, ports only for tcp/udp) but works on
flow records, which are aggregates: it tells which flows would have matched, not
exactly which packets. A record is a connection: each hook that saw it (`paths`) is
matched in the direction its packets went, and only the matching ways' packets count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ebpftop.collectors.flows.model import FlowRecord

from .spec import Rule, format_duration

_PROTO_NAMES = {"tcp": ("tcp",), "udp": ("udp",), "icmp": ("icmp", "icmp6")}


def describe(rule: Rule) -> str:
    """Plain words for a confirmation screen: what traffic, what happens to it."""
    m = rule.match
    verb = {
        "deny": "DROPS",
        "allow": "lets through (and stops later rules from dropping)",
        "count": "counts (and lets through)",
    }[rule.action]
    what = "all IP packets" if m.proto == "any" else f"{m.proto} packets"
    src = m.src or "any address"
    dst = m.dst or "any address"
    if m.sport:
        src += f" port {_ports(m.sport)}"
    if m.dport:
        dst += f" port {_ports(m.dport)}"
    where = f"on {m.iface}" if m.iface else "on every interface the rules program is attached to"
    way = {"in": "arriving", "out": "leaving", None: "arriving or leaving"}[m.direction]
    ttl = f" for {format_duration(rule.ttl)}" if rule.ttl else " until it is removed"
    return f"{verb} {what} from {src} to {dst} {way} {where}{ttl}"


def _ports(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _in(addr: str, cidr: str | None) -> bool:
    if cidr is None:
        return True
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


@dataclass(frozen=True)
class Way:
    """Packets of a connection as one hook saw them, in the direction they travelled."""

    iface: str
    direction: str  # ingress | egress
    src: str
    sport: int
    dst: str
    dport: int
    packets: int
    bytes: int


def ways(flow: FlowRecord) -> list[Way]:
    """Each hook's packets of `flow` (a connection counts both of its ways; a record
    without paths, from an older recording, is its own one way)."""
    paths = getattr(flow, "paths", ()) or ()
    if not paths:
        f = flow
        return [Way(f.iface, f.direction, f.src, f.sport, f.dst, f.dport, f.packets, f.bytes)]
    out = []
    for p in paths:
        ends = (flow.src, flow.sport, flow.dst, flow.dport)
        if not p.forward:
            ends = (flow.dst, flow.dport, flow.src, flow.sport)
        out.append(Way(p.iface, p.direction, *ends, p.packets, p.bytes))
    return out


def _way_matches(rule: Rule, proto: str, family: int, w: Way) -> bool:
    m = rule.match
    if m.proto != "any" and proto not in _PROTO_NAMES[m.proto]:
        return False
    fam = m.family
    if fam is not None and family != fam:
        return False
    if m.iface is not None and w.iface != m.iface:
        return False
    if m.direction is not None and w.direction != ("ingress" if m.direction == "in" else "egress"):
        return False
    if not (_in(w.src, m.src) and _in(w.dst, m.dst)):
        return False
    for rng, port in ((m.sport, w.sport), (m.dport, w.dport)):
        if rng is not None and not rng[0] <= port <= rng[1]:
            return False
    return True


def matching_ways(rule: Rule, flow: FlowRecord) -> list[Way]:
    return [w for w in ways(flow) if _way_matches(rule, flow.proto, flow.family, w)]


def matches_flow(rule: Rule, flow: FlowRecord) -> bool:
    """Would `rule` match packets of this flow record (either way of the connection)?"""
    return bool(matching_ways(rule, flow))


@dataclass(frozen=True)
class Preview:
    flows: tuple[FlowRecord, ...]  # matching, biggest first
    packets: int
    bytes: int
    shadowed_by: int | None  # id of an earlier rule that takes these flows first, if all are
    text: str


def preview(rule: Rule, flows: Iterable[FlowRecord], earlier: Sequence[Rule] = (), limit: int = 5) -> Preview:
    """What `rule` would have matched among `flows`; rules in `earlier` (higher priority)
    take their flows first, as in the kernel."""
    hits: list[FlowRecord] = []
    taken_by: set[int] = set()
    packets = nbytes = 0
    for f in flows:
        mine = []
        for w in matching_ways(rule, f):
            first = next((e for e in earlier if _way_matches(e, f.proto, f.family, w)), None)
            if first is not None:
                taken_by.add(first.id)
            else:
                mine.append(w)
        if mine:
            hits.append(f)
            packets += sum(w.packets for w in mine)
            nbytes += sum(w.bytes for w in mine)
    hits.sort(key=lambda f: f.bytes, reverse=True)
    verb = {"deny": "would drop", "allow": "would allow", "count": "would count"}[rule.action]
    if not hits:
        text = f"this {rule.action} {verb} nothing in the recent flows"
        if taken_by:
            text += f" (rule {', '.join(map(str, sorted(taken_by)))} matches them first)"
    else:
        shown = ", ".join(
            f"{f.proto} {f.src}:{f.sport} -> {f.dst}:{f.dport} on {f.iface}" for f in hits[:limit]
        )
        more = f" and {len(hits) - limit} more" if len(hits) > limit else ""
        text = (
            f"this {rule.action} {verb} {len(hits)} recent flow{'s' if len(hits) != 1 else ''} "
            f"({packets} packets, {nbytes} bytes): {shown}{more}"
        )
    shadow = next(iter(taken_by)) if taken_by and not hits and len(taken_by) == 1 else None
    return Preview(tuple(hits), packets, nbytes, shadow, text)
