"""What the Rules pane shows, as pure functions of the `rules` payload (no widgets).

Columns are chosen by the width the pane has: a pane under 100 columns (80x24, and each
pane of the 2x2 grid at 160) gets the essentials (id, action, match, packets, bytes,
rate, last hit) and the selected rule in full below the table (text, author, age,
expiry, rate sparkline); from 100 the priority, the sparkline and the expiry get
columns; from 110 the author. The match column takes whatever is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.model import RuleRecord, RulesData, rule_of
from ebpftop.collectors.rules.spec import format_rule
from ebpftop.core.model import Snapshot

from ...text import clean
from .. import fmt
from ..canary.render import sparkline
from ..fmt import Part
from ..table import Cell
from ..table import Column as TableColumn

FlowKey = tuple[str, str, str, str, int, str, int]  # a flow as the flows map keys it

ENFORCED = "◆"  # allow/deny still in force: it stays when ebpftop exits
ACTION_STYLE = {"deny": "bold red", "allow": "green", "count": ""}
SPARK_W = 10


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # 0: takes the room left (the match)
    right: bool = False


_POS = Column("pos", "#", 3, True)
_BASE = (
    Column("id", "id", 3, True),
    Column("action", "action", 7),
    Column("match", "match", 0),
    Column("packets", "packets", 7, True),
    Column("bytes", "bytes", 9, True),
    Column("rate", "rate", 7, True),
    Column("last", "last hit", 9, True),
)
_SPARK = Column("spark", "rate history", SPARK_W)
_EXPIRY = Column("expiry", "expiry", 9)
_AUTHOR = Column("author", "author", 18)
MIN_MATCH = 16
WIDE = 100  # pane width for #, the sparkline and the expiry
WIDER = 110  # ... and the author (a stacked pane at 110-119 columns, a grid pane from 230)


def columns(width: int) -> list[Column]:
    """The columns for a table `width` cells wide, the match column sized to fill it.
    Widths include one cell of separation (the table has no cell padding: at 80
    columns every cell counts); rows are in priority order, so `#` waits for room."""
    cols = list(_BASE)
    if width >= WIDE:
        cols = [_POS, *cols, _SPARK, _EXPIRY]
    if width >= WIDER:
        cols.append(_AUTHOR)
    cols = [Column(c.key, c.label, c.width + 1, c.right) for c in cols]
    fixed = sum(c.width for c in cols if c.key != "match")
    match = max(MIN_MATCH, width - fixed - 1)
    return [Column(c.key, c.label, match) if c.key == "match" else c for c in cols]


def match_text(rec: RuleRecord) -> str:
    """The rule without its action and TTL (they have their own columns)."""
    rule = rule_of(rec)
    if rule is None:
        return rec.text
    text = format_rule(rule.with_(ttl=None))
    return text[len(rule.action) :].strip() or "(all IP packets)"


def enforced(rec: RuleRecord) -> bool:
    return rec.action != "count" and not rec.expired


def expiry_text(rec: RuleRecord, now: float) -> str:
    if rec.expired:
        return "expired"
    if rec.session and rec.action == "count":
        return "session"  # a count rule that ends with this dashboard
    if rec.expires is None:
        return fmt.NO_DATA
    return "in " + fmt.duration(rec.expires - now)


def lifetime_text(rec: RuleRecord, now: float) -> str:
    """The detail line's words for how long the rule lives, and whether past ebpftop."""
    exp = expiry_text(rec, now)
    if exp != fmt.NO_DATA:  # "in 29m", "session" (a count rule ending with this dashboard), "expired"
        return f"expiry {exp}"  # (◆ in the action column says an enforcing rule stays after exit)
    return "no expiry, stays after exit" if enforced(rec) else "no expiry"


def per_second(x: float | None) -> str:
    return fmt.NO_DATA if x is None else fmt.number(round(x, 1) if x < 10 else round(x)) + "/s"


def cells(rec: RuleRecord, cols: list[Column], now: float) -> tuple[Cell, ...]:
    """One table row as (text, style) cells; the table cleans the payload's text."""
    dim = " dim" if rec.expired else ""
    out: list[Cell] = []
    for c in cols:
        style = ""
        if c.key == "pos":
            text = str(rec.position + 1)
        elif c.key == "id":
            text = str(rec.id)
        elif c.key == "action":
            text = (ENFORCED if enforced(rec) else " ") + " " + rec.action
            style = ACTION_STYLE.get(rec.action, "") if not rec.expired else ""
        elif c.key == "match":
            text = clean(match_text(rec), max_len=max(8, c.width - 1))
        elif c.key == "packets":
            text = fmt.number(rec.packets)
        elif c.key == "bytes":
            text = fmt.size(rec.bytes)
        elif c.key == "rate":
            text = per_second(rec.pps)
        elif c.key == "last":
            text = "never" if rec.last_hit is None else fmt.duration(now - rec.last_hit) + " ago"
        elif c.key == "spark":
            text, style = sparkline(list(rec.history), c.width - 1), "cyan"
        elif c.key == "expiry":
            text, style = expiry_text(rec, now), "yellow" if rec.expired else ""
        elif c.key == "author":
            text = clean(rec.author or fmt.NO_DATA, max_len=c.width - 1)
        else:  # pragma: no cover - columns() only makes the keys above
            text = ""
        out.append((text, (style + dim).strip()))
    return tuple(out)


def table_columns(cols: list[Column]) -> list[TableColumn]:
    """The table's columns: rules' widths count the gap the table draws itself."""
    return [TableColumn(c.key, c.label, max(1, c.width - 1), c.right) for c in cols]


def detail(rec: RuleRecord, now: float) -> list[Part]:
    """The selected rule in full under the table (the match column may be cut): who,
    age, expiry and rate history first, then the whole rule text."""
    parts: list[Part] = [(f"#{rec.position + 1} id {rec.id}", "bold")]
    if rec.history:
        parts += [("  rate ", "$text-muted"), (sparkline(list(rec.history), SPARK_W), "$accent")]
    age = fmt.duration(now - rec.created) if rec.created else fmt.NO_DATA
    parts.append(
        (
            (f"  by {clean(rec.author, 60)}," if rec.author else " ")
            + f" {age} ago, {lifetime_text(rec, now)}",
            "$text-muted",
        )
    )
    parts += ["\n", clean(rec.text, 400)]  # (◆ in the action column and the summary says it stays)
    return parts


def summary(data: RulesData) -> list[Part]:
    """The line above the table: how many rules, how many stay enforced, where attached."""
    n = len(data.rules)
    parts: list[Part] = [(f"{n}/{data.max_rules} rules", "bold")]
    if data.enforcing:
        parts.append((f"  {ENFORCED} {data.enforcing} stay enforced after exit", "$warning"))
    expired = sum(1 for r in data.rules if r.expired)
    if expired:
        parts.append((f"  {expired} expired (no longer match)", "$text-muted"))
    if data.attached:
        parts.append(("  on ", "$text-muted"))
        parts.append(clean(attached_text(data.attached), 200))
    if data.problem:
        parts += ["\n", ("✖ ", "bold $error"), clean(data.problem, 400)]
    return parts


def attached_text(attached: Iterable[object]) -> str:
    """("eth0 ingress", "eth0 egress", "eth1 ingress (device gone)")
    -> "eth0 in+out, eth1 in (device gone)"."""
    ways: dict[str, list[str]] = {}
    for item in attached:
        iface, _, rest = str(item).partition(" ")
        way, _, note = rest.partition(" ")
        ways.setdefault(iface, []).append(
            {"ingress": "in", "egress": "out"}.get(way, way) + (f" {note}" if note else "")
        )
    return ", ".join(f"{iface} {'+'.join(w)}" for iface, w in ways.items())


def flow_key(f: FlowRecord) -> FlowKey:
    return (f.iface, f.direction, f.proto, f.src, f.sport, f.dst, f.dport)


def recent_flows(history: Iterable[Snapshot]) -> list[FlowRecord]:
    """Every flow record in the flows history (the store's snapshots), each flow once with
    its latest counters: what a preview looks at."""
    seen: dict[FlowKey, FlowRecord] = {}
    for snap in history:
        for f in getattr(snap.data, "flows", None) or ():
            seen[flow_key(f)] = f
    return list(seen.values())
