"""What the Fleet pane shows, as pure functions of the `fleet` payload (no widgets).

At 80 columns: node, agent, traffic, retransmits, connect p99 and failures, rule hits,
and why the node is where it is; from 110 the agent's CPU and memory, from 130 its
version. The "why" column takes what is left. Sorting other than "worst" is the
operator's (`s`); the payload's own order is the collector's ranking.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from ebpftop.collectors.fleet.model import FleetData, FleetNode

from .. import fmt
from ..fmt import NO_DATA, Part
from ..table import Cell, Column

SORTS: tuple[tuple[str, str], ...] = (
    ("worst", "worst first"),
    ("traffic_bps", "traffic"),
    ("retransmits_ps", "retransmits"),
    ("connect_p99_s", "connect p99"),
    ("connect_failures_ps", "connect failures"),
    ("rule_hits_ps", "rule hits"),
    ("name", "name"),
)


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int  # 0: takes the room left
    right: bool = False
    sorts: str = ""  # the SORTS key this column sorts by


_BASE = (
    Col("name", "node", 12, sorts="name"),
    Col("agent", "agent", 5),
    Col("traffic", "traffic", 10, True, "traffic_bps"),
    Col("retrans", "retr/s", 7, True, "retransmits_ps"),
    Col("p99", "conn p99", 8, True, "connect_p99_s"),
    Col("fail", "fail/s", 6, True, "connect_failures_ps"),
    Col("hits", "hits/s", 7, True, "rule_hits_ps"),
    Col("why", "why", 0),
)
_COST = (Col("cpu", "cpu", 5, True), Col("rss", "rss", 9, True))
_VERSION = Col("version", "version", 10)
MIN_WHY = 14
WIDE, WIDER = 110, 130


def columns(width: int) -> list[Col]:
    cols = list(_BASE)
    if width >= WIDE:
        cols[-1:-1] = _COST
    if width >= WIDER:
        cols.insert(2, _VERSION)
    fixed = sum(c.width + 1 for c in cols if c.width)
    why = max(MIN_WHY, width - fixed - 1)
    return [Col(c.key, c.label, why) if not c.width else c for c in cols]


def table_columns(cols: list[Col], sort: str) -> list[Column]:
    return [
        Column(c.key, c.label + ("▼" if c.sorts == sort and sort != "name" else ""), c.width, c.right)
        for c in cols
    ]


def sorted_nodes(data: FleetData, sort: str) -> list[FleetNode]:
    nodes = list(data.nodes)
    if sort == "worst":
        return nodes
    if sort == "name":
        return sorted(nodes, key=lambda n: (n.name, n.instance))
    # highest first; no data last
    return sorted(nodes, key=lambda n: (getattr(n, sort) is None, -(getattr(n, sort) or 0.0), n.name))


def _rate(v: float | None) -> str:
    return NO_DATA if v is None else fmt.number(round(v, 1) if v < 100 else round(v))


def _ms(v: float | None) -> str:
    return NO_DATA if v is None else f"{v * 1000:.3g}ms"


def agent_cell(node: FleetNode) -> Cell:
    if node.up is False:
        return ("DOWN", "bold $error")
    if node.sources_down:
        return ("part", "bold $warning")
    return ("up", "$success") if node.up else ("?", "$text-muted")


def why_cell(node: FleetNode) -> Cell:
    if not node.reasons:
        return ("", "")
    style = "bold $error" if node.up is False or node.failing_canaries else "$warning"
    return ("; ".join(node.reasons), style)


CELLS: dict[str, Callable[[FleetNode], Cell]] = {
    "name": lambda n: (n.name, "bold" if n.reasons else ""),
    "agent": agent_cell,
    "version": lambda n: (n.version or NO_DATA, "$text-muted"),
    "traffic": lambda n: (fmt.rate(n.traffic_bps), ""),
    "retrans": lambda n: (_rate(n.retransmits_ps), ""),
    "p99": lambda n: (_ms(n.connect_p99_s), ""),
    "fail": lambda n: (_rate(n.connect_failures_ps), ""),
    "hits": lambda n: (_rate(n.rule_hits_ps), ""),
    "cpu": lambda n: (fmt.percent(None if n.cpu_ratio is None else n.cpu_ratio * 100), "$text-muted"),
    "rss": lambda n: (fmt.size(n.rss_bytes), "$text-muted"),
    "why": why_cell,
}


def cells(node: FleetNode, cols: list[Col]) -> tuple[Cell, ...]:
    return tuple(CELLS[c.key](node) for c in cols)


def summary(data: FleetData, sort: str, pending_filter: str | None) -> list[Part]:
    """'3 nodes · 1 needs a look · rate window 1m · filter service:checkout · URL'."""
    bad = sum(1 for n in data.nodes if n.reasons)
    down = sum(1 for n in data.nodes if n.up is False)
    parts: list[Part] = [(f"{len(data.nodes)} node{'s' * (len(data.nodes) != 1)}", "bold")]
    if bad:
        parts += ["  ", (f"{bad} need{'s' * (bad == 1)} a look", "bold $warning")]
    if down:
        parts += ["  ", (f"{down} agent{'s' * (down != 1)} down", "bold $error")]
    parts += [("  window " + data.window, "$text-muted")]
    if pending_filter is not None and pending_filter != data.filter:
        parts += ["  ", (f"filter {pending_filter or '(none)'}: applying…", "italic $accent")]
    elif data.filter:
        parts += ["  ", (f"filter {data.filter}", "bold $accent")]
    parts += [("  " + data.url, "$text-muted")]
    if data.failed:
        parts += ["\n", ("queries failed: " + "; ".join(data.failed), "$warning")]
    if not data.nodes:
        parts += [
            "\n",
            (
                "No ebpftop agent in this Prometheus: run `ebpftop agent --metrics HOST:9464` on each node "
                "and scrape it (deploy/kubernetes has the DaemonSet).",
                "$warning",
            ),
        ]
    return parts


def keys_line(sort: str) -> str:
    label = dict(SORTS)[sort]
    return f"↑↓ select  enter: how to reach it  s: sort ({label})  /: filter"


def commands(template: str, node: FleetNode) -> str:
    """A command from the operator's template, each label shell-quoted: node names and
    addresses come from a server, and this text is meant to be pasted into a shell."""
    return template.format(
        node=shlex.quote(node.name), host=shlex.quote(node.host), instance=shlex.quote(node.instance)
    )


def detail_lines(node: FleetNode, data: FleetData) -> list[tuple[str, str]]:
    """(label, value) rows of the node's detail: every column beside the fleet's median."""
    med = dict(data.medians)
    rows = [
        ("instance", node.instance),
        ("agent", {True: "up", False: "DOWN (Prometheus cannot scrape it)", None: "unknown"}[node.up]),
        ("version", node.version or NO_DATA),
    ]
    for key, label, show in (
        ("traffic_bps", "traffic", fmt.rate),
        ("retransmits_ps", "retransmits/s", _rate),
        ("connect_p99_s", "connect p99", _ms),
        ("connect_failures_ps", "connect failures/s", _rate),
        ("rule_hits_ps", "rule hits/s", _rate),
    ):
        value = getattr(node, key)
        ref = med.get(key)
        rows.append((label, show(value) + (f"   (fleet median {show(ref)})" if ref is not None else "")))
    rows += [
        ("failing canaries", ", ".join(node.failing_canaries) or "none"),
        ("agent sources down", ", ".join(node.sources_down) or "none"),
        ("agent cpu", fmt.percent(None if node.cpu_ratio is None else node.cpu_ratio * 100)),
        ("agent rss", fmt.size(node.rss_bytes)),
    ]
    return rows
