"""Sorting and grouping of flows for the pane (pure; no Textual)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .model import FlowRecord

# (key, label) in the order `s` cycles through them
SORTS = (
    ("bps", "bytes/s"),
    ("pps", "packets/s"),
    ("bytes", "total bytes"),
    ("retransmits", "retransmits"),
    ("connect_latency_ms", "connect latency"),
)
GROUPS = ("process", "service", "remote")


def next_sort(current: str) -> str:
    keys = [k for k, _ in SORTS]
    return keys[(keys.index(current) + 1) % len(keys)] if current in keys else keys[0]


def sort_flows(flows: Iterable[FlowRecord], key: str) -> list[FlowRecord]:
    """Largest first; unknown values (None) last; ties by total bytes, then stable."""
    if key not in {k for k, _ in SORTS}:
        raise ValueError(f"cannot sort by {key!r}")

    def k(f: FlowRecord) -> tuple[bool, Any, int]:
        v = getattr(f, key)
        return (v is not None, v if v is not None else 0, f.bytes)

    return sorted(flows, key=k, reverse=True)


@dataclass(frozen=True)
class FlowGroup:
    key: str
    flows: int
    packets: int
    bytes: int
    bps: float | None
    pps: float | None
    retransmits: int


def group_key(f: FlowRecord, by: str) -> str:
    if by == "process":
        if f.pid is None:
            return "(unknown process)"
        return f"{f.comm or '?'} [{f.pid}]"
    if by == "service":
        return f.service or "(no service)"
    if by == "remote":
        return f.local_remote()[2]
    raise ValueError(f"cannot group by {by!r} (choose {', '.join(GROUPS)})")


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def group_flows(flows: Iterable[FlowRecord], by: str) -> list[FlowGroup]:
    """One row per process / service / remote address, largest rate first."""
    acc: dict[str, FlowGroup] = {}
    for f in flows:
        k = group_key(f, by)
        g = acc.get(k) or FlowGroup(k, 0, 0, 0, None, None, 0)
        acc[k] = FlowGroup(
            k,
            g.flows + 1,
            g.packets + f.packets,
            g.bytes + f.bytes,
            _add(g.bps, f.bps),
            _add(g.pps, f.pps),
            g.retransmits + f.retransmits,
        )
    groups = list(acc.values())
    return sorted(groups, key=lambda g: (g.bps is not None, g.bps or 0, g.bytes), reverse=True)
