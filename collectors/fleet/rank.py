"""Worst first: what an incident room needs at the top of the fleet without a keypress.

The order: agents Prometheus cannot scrape; nodes with a failing canary; nodes with an
agent source that is down; then outliers: a column's value at OUTLIER times the median
of the OTHER nodes or more (a fleet of two compares each with the other), and at least
the column's floor (so 0.05 against 0.01 retransmits/s is nobody's incident). The floors
are low on purpose: over a 1m rate window a symptom that began seconds ago is still
diluted (5 s of 2 retransmits/s read as 0.17/s), and a quiet fleet's median is 0.
Nodes that look fine keep their name order, so the table does not reshuffle on noise.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .model import FleetNode

OUTLIER = 3.0
MAX_RATIO = 1000.0
AGENT_DOWN, CANARY_FAIL, SOURCE_DOWN = 1e6, 1e5, 1e4


def _rate(v: float) -> str:
    return f"{v:.3g}/s" if v < 1000 else f"{v:,.0f}/s"


def _bytes(v: float) -> str:
    # binary units, as the panes write rates
    for unit, size in (("GiB/s", 1 << 30), ("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if v >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} B/s"


def _ms(v: float) -> str:
    return f"{v * 1000:.3g} ms"


@dataclass(frozen=True)
class Column:
    key: str  # FleetNode's field
    label: str  # how a reason names it
    floor: float  # below this the value is nobody's incident
    show: Callable[[float], str]


COLUMNS = (
    Column("retransmits_ps", "retransmits", 0.1, _rate),
    Column("connect_failures_ps", "connect failures", 0.1, _rate),
    Column("connect_p99_s", "connect p99", 0.005, _ms),
    Column("traffic_bps", "traffic", 50_000.0, _bytes),
    Column("rule_hits_ps", "rule hits", 10.0, _rate),
)


def medians(nodes: Sequence[FleetNode]) -> dict[str, float]:
    out = {}
    for col in COLUMNS:
        values = [v for n in nodes if (v := getattr(n, col.key)) is not None]
        if values:
            out[col.key] = statistics.median(values)
    return out


def _outliers(node: FleetNode, others: Sequence[FleetNode]) -> list[tuple[float, str]]:
    found = []
    for col in COLUMNS:
        value = getattr(node, col.key)
        if value is None or value < col.floor:
            continue
        ref_values = [v for n in others if (v := getattr(n, col.key)) is not None]
        if not ref_values:
            continue
        ref = statistics.median(ref_values)
        ratio = MAX_RATIO if ref <= 0 else min(MAX_RATIO, value / ref)
        if ratio >= OUTLIER:
            found.append((ratio, f"{col.label} {col.show(value)} (others {col.show(ref)})"))
    return sorted(found, reverse=True)


def judged(node: FleetNode, others: Sequence[FleetNode]) -> FleetNode:
    """`node` with its score and reasons, against the `others`."""
    reasons: list[str] = []
    score = 0.0
    if node.up is False:
        score += AGENT_DOWN
        reasons.append("agent down (Prometheus cannot scrape it)")
    if node.failing_canaries:
        score += CANARY_FAIL + len(node.failing_canaries)
        reasons.append("canary FAIL: " + ", ".join(node.failing_canaries))
    if node.sources_down and node.up is not False:
        score += SOURCE_DOWN + len(node.sources_down)
        reasons.append("agent source down: " + ", ".join(node.sources_down))
    outliers = _outliers(node, others)
    if outliers:
        score += outliers[0][0]
        reasons += [why for _, why in outliers]
    return dataclasses.replace(node, score=score, reasons=tuple(reasons))


def rank(nodes: Sequence[FleetNode]) -> tuple[FleetNode, ...]:
    """Every node judged against the others, worst first, then by name."""
    out = [judged(n, [o for o in nodes if o is not n]) for n in nodes]
    return tuple(sorted(out, key=lambda n: (-n.score, n.name, n.instance)))
