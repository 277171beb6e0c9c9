"""What a rule matches and does (the part the datapath compiles), and its text form.

A `Match` is pure data; `Rule` adds who made it, when, its TTL and comment, and the
stable slot its kernel counters live in. See README.md for the rule text grammar.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

ACTIONS = ("count", "allow", "deny")
PROTOS = {"any": (), "tcp": (6,), "udp": (17,), "icmp": (1, 58)}  # icmp: ICMP and ICMPv6
DIRECTIONS = ("in", "out")


@dataclass(frozen=True)
class Match:
    proto: str = "any"  # any | tcp | udp | icmp
    src: str | None = None  # CIDR (normalised, e.g. "203.0.113.0/24"); None = any
    dst: str | None = None
    sport: tuple[int, int] | None = None  # inclusive range; None = any
    dport: tuple[int, int] | None = None
    iface: str | None = None  # None = every interface the rules program is attached to
    direction: str | None = None  # "in" | "out"; None = both

    @property
    def family(self) -> int | None:
        """4 or 6 when an address pins the rule to one family, else None (both)."""
        for cidr in (self.src, self.dst):
            if cidr is not None:
                return ipaddress.ip_network(cidr).version
        return None


@dataclass(frozen=True)
class Rule:
    action: str
    match: Match = field(default_factory=Match)
    ttl: float | None = None  # seconds from `created`; None = until removed
    comment: str = ""
    id: int = 0  # 0 until the rule set assigns one
    author: str = ""
    created: float = 0.0  # wall-clock seconds
    expires: float | None = None  # wall-clock seconds (created + ttl)
    slot: int = -1  # kernel counter slot, stable for the rule's life; -1 until assigned
    session: int = 0  # pid of the dashboard that owns a session-scoped count rule, else 0

    def with_(self, **kw: Any) -> Rule:
        return replace(self, **kw)

    def same_match(self, other: Rule) -> bool:
        return self.action == other.action and self.match == other.match


def _ports(rng: tuple[int, int]) -> str:
    return str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out or "0s"


def format_rule(rule: Rule, *, with_ttl: bool = True) -> str:
    """The canonical rule text; parsing it gives the same rule back."""
    m = rule.match
    parts = [rule.action]
    if m.proto != "any":
        parts.append(m.proto)
    if m.src is not None or m.sport is not None:
        parts += ["from", m.src or "any"]
        if m.sport is not None:
            parts += ["port", _ports(m.sport)]
    if m.dst is not None or m.dport is not None:
        parts += ["to", m.dst or "any"]
        if m.dport is not None:
            parts += ["port", _ports(m.dport)]
    if m.iface is not None:
        parts += ["on", m.iface]
    if m.direction is not None:
        parts.append(m.direction)
    if with_ttl and rule.ttl is not None:
        parts += ["ttl", format_duration(rule.ttl)]
    if rule.comment:
        parts.append('"' + rule.comment + '"')
    return " ".join(parts)
