"""What the Flows pane shows, as plain data: the columns that fit the pane's width, one
row of cells per connection (or fold of ended connections, or group), the status and
counters lines. Pure, so testable without a screen.

Cells are (text, style) pairs; the pane turns payload text into `tui.text.safe`. Widths
are fixed per layout (compact < 130 cells, full, wide >= 170) so the table does not
jump, and rows are keyed by flow so the cursor follows the flow, not the row number.

Who owns a connection comes from the payload's identities (`FlowsData.identity`, the
`identity` lookup here): the process cell names the peer's process when the other end is
a socket on this node too (`nginx → haproxy`: the arrow points from the end that opened
it), and where the owner runs (pod, container, unit or netns: `Identity.where`) gets a
column in the full and wide layouts when a row on screen has one and the flows stay
whole beside it (IPv4 ones from about 150 cells), else joins the process cell as room
allows (compact: after the peer and the service).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ebpftop.collectors.flows.model import COUNTERS, FlowRecord, FlowsData, count_text
from ebpftop.collectors.flows.view import (
    GROUPS,
    SORTS,
    FlowFold,
    FlowGroup,
    FlowRow,
    Lookup,
    ended,
    group_flows,
    group_key,
    no_identity,
)

from .. import fmt
from ..table import Cell, Column, Row

FlowKey = tuple[Any, ...]  # ("conn", proto, src, sport, dst, dport) or ("fold", *fold key)

GROUPINGS = ("none", *GROUPS)
SORT_LABELS = dict(SORTS)
FULL_FROM = 130
PROC_MAX = 26
WIDE_FROM = 170
WHERE_FLOW_MIN = 20  # the flow column keeps what its rows need (at least this), else no where column
WHERE_MAX = 32  # a namespace/pod name longer than this is cut in the middle
_PORTED = ("tcp", "udp", "sctp", "udplite", "dccp")


def flow_key(f: FlowRow) -> FlowKey:
    """A row's identity across ticks: the connection, or the fold's key."""
    if isinstance(f, FlowFold):
        return ("fold", *f.key)
    return ("conn", f.proto, f.src, f.sport, f.dst, f.dport)


def state_text(f: FlowRow, now: float) -> str:
    """`×12` (a fold of 12 ended connections), `closed`, `idle` or `live`."""
    if isinstance(f, FlowFold):
        return f"×{f.connections}"
    if f.closed:
        return "closed"
    return "idle" if ended(f, now) else "live"


def ifaces_text(f: FlowRow) -> str:
    """The interfaces that saw it: `veth1`, `veth1 +2`."""
    members = f.members if isinstance(f, FlowFold) else (f,)
    names = sorted({p.iface for m in members for p in m.paths} or {m.iface for m in members})
    return names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")


def next_grouping(current: str, offered: Sequence[str] = GROUPS) -> str:
    """The grouping after `current` among "none" and the `offered` group keys."""
    cycle = ["none", *(g for g in GROUPINGS if g in offered)]
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]


# --- numbers -------------------------------------------------------------------------


def short_size(n: float | None) -> str:
    """Binary units in at most 5 characters: 912, 4.8K, 37K, 1023M."""
    if n is None or n != n:
        return fmt.NO_DATA
    n = float(n)
    if abs(n) < 1024:
        return f"{n:.0f}"
    for unit in "KMGTP":
        n /= 1024
        if abs(n) < 1024 or unit == "P":
            return f"{n:.1f}{unit}" if abs(n) < 10 else f"{n:.0f}{unit}"
    return fmt.NO_DATA  # unreachable


def count(x: float | None) -> str:
    """Packets (per second): 0.5, 3910, 12.3k, 123k."""
    if x is None or x != x:
        return fmt.NO_DATA
    return count_text(x)


def ms(x: float | None) -> str:
    if x is None or x != x:
        return fmt.NO_DATA
    if x < 10:
        return f"{x:.2f}ms"
    if x < 1000:
        return f"{x:.1f}ms" if x < 100 else f"{x:.0f}ms"
    return f"{x / 1000:.1f}s"


# --- addresses -----------------------------------------------------------------------


def endpoint(addr: str, port: int, proto: str) -> str:
    if proto not in _PORTED:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def icmp_suffix(f: FlowRecord) -> str:
    return f" type {f.sport} code {f.dport}" if f.proto in ("icmp", "icmp6") else ""


def full_flow(f: FlowRow) -> str:
    """`src:sport → dst:dport` (ICMP: type and code instead of ports); a fold of ended
    connections `src → dst:dport` (their source ports differ)."""
    if isinstance(f, FlowFold):
        return f"{f.src} → {endpoint(f.dst, f.dport, f.proto)}"
    return f"{endpoint(f.src, f.sport, f.proto)} → {endpoint(f.dst, f.dport, f.proto)}{icmp_suffix(f)}"


def local_flow(f: FlowRow) -> str:
    """`:local-port → remote:port` from this host's side (← for ingress); a fold
    `→ dst:dport` (the process column says whose)."""
    if isinstance(f, FlowFold):
        return f"→ {endpoint(f.dst, f.dport, f.proto)}"
    _laddr, lport, raddr, rport = f.local_remote()
    arrow = "→" if f.direction == "egress" else "←"
    remote = endpoint(raddr, rport, f.proto)
    if f.proto in _PORTED:
        return f":{lport} {arrow} {remote}"
    return f"{arrow} {remote}{icmp_suffix(f)}"


def squeeze(text: str, room: int) -> str:
    """Cut the middle, keep both ends (an address's end and its port matter most)."""
    if len(text) <= room:
        return text
    if room <= 1:
        return text[:room]
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head) :]


def peer_text(f: FlowRecord, identity: Lookup) -> str | None:
    """` → haproxy` (this end opened it) or ` ← loadgen` (the peer did): the process at
    the other end when that end is a socket on this node too."""
    if f.peer_pid is None:
        return None
    who = identity(f.peer_pid)
    name = who.comm if who is not None and who.comm else f"pid {f.peer_pid}"
    return f" {'→' if f.direction == 'egress' else '←'} {name}"


def where_text(f: FlowRow, identity: Lookup) -> str | None:
    """Where the row's owner runs (`Identity.where`: pod, container, unit or netns); a
    fold's when its members share one process."""
    pid = f.common("pid") if isinstance(f, FlowFold) else f.pid
    who = identity(pid) if pid is not None else None
    return who.where() if who is not None else None


# What the process cell adds to the name while it fits, most wanted first.
COMPACT_EXTRAS = ("peer", "service", "where", "pid")
FULL_EXTRAS = ("peer", "pid", "where")  # the service has a column of its own


def process_text(
    f: FlowRow,
    room: int,
    identity: Lookup = no_identity,
    extras: Sequence[str] = COMPACT_EXTRAS,
) -> str:
    """`comm [pid] → peer · service · where`, keeping of `extras` (in that order of
    preference) what fits `room`; at least the name."""
    if isinstance(f, FlowFold):
        return _fold_owner(f, room)
    comm = f.comm or (None if f.pid is None else "?")
    svc = f.service if f.service and f.service != f.comm else None
    if comm is None:
        return (svc if "service" in extras else None) or fmt.NO_DATA
    parts = {
        "pid": f" [{f.pid}]" if f.pid is not None else None,
        "peer": peer_text(f, identity),
        "service": f" · {svc}" if svc else None,
        "where": (f" · {w}" if (w := where_text(f, identity)) else None) if "where" in extras else None,
    }

    def text(keys: set[str]) -> str:
        return comm + "".join(v for k in ("pid", "peer", "service", "where") if k in keys and (v := parts[k]))

    chosen: set[str] = set()
    for k in extras:
        if parts[k] and len(text(chosen | {k})) <= room:
            chosen.add(k)
    return text(chosen)


def _fold_owner(f: FlowFold, room: int) -> str:
    """The owner a fold is made for, with the one pid its members share, as room allows."""
    pid = f.common("pid")
    text = f"{f.owner} [{pid}]" if pid is not None else f.owner
    return text if len(text) <= room else f.owner


# --- columns and rows ----------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    by: str
    group: FlowGroup
    connect_latency_ms: float | None  # the slowest connect among its flows


def _sort_cell(label: str, key: str, sort: str) -> str:
    return label + "▼" if key == sort else label


def layout(width: int) -> str:
    return "wide" if width >= WIDE_FROM else "full" if width >= FULL_FROM else "compact"


def _mark(f: FlowRow, now: float | None) -> str:
    """The compact layout's mark (it has no state column): `×12 ` for a fold of 12 ended
    connections, `✕ ` for a lone ended one."""
    if isinstance(f, FlowFold):
        return f"×{f.connections} "
    return "✕ " if now is not None and ended(f, now) else ""


def flow_columns(
    width: int,
    sort: str,
    flows: Sequence[FlowRow],
    now: float | None = None,
    identity: Lookup = no_identity,
) -> tuple[list[Column], str]:
    """The columns for a table `width` cells wide, and how the flow column is drawn
    ("full" src → dst, or "local" port ⇄ remote)."""

    def s(label: str, key: str) -> str:
        return _sort_cell(label, key, sort)

    kind = layout(width)
    if kind == "compact":
        nums = [
            Column("bps", s("B/s", "bps"), 5, True),
            Column("pps", s("pkt/s", "pps"), 6, True),
            Column("bytes", s("total", "bytes"), 6, True),
            Column("retransmits", s("rtx", "retransmits"), 4, True),
            Column("connect_latency_ms", s("conn", "connect_latency_ms"), 7, True),
        ]
        # What is left is shared by the flow and the process: the flow first (its
        # addresses and ports), the process down to 8 characters, then back up to 26.
        free = width - sum(c.width + 1 for c in nums) - 2
        proc_need = max([7] + [len(process_text(f, PROC_MAX, identity)) for f in flows])
        proc_min = min(proc_need, 8)
        marks = [len(f.proto) + 1 + len(_mark(f, now)) for f in flows]
        form, need = (
            "local",
            max((m + len(local_flow(f)) for m, f in zip(marks, flows, strict=True)), default=20),
        )
        full_need = max((m + len(full_flow(f)) for m, f in zip(marks, flows, strict=True)), default=20)
        if full_need + proc_min <= free:
            form, need = "full", full_need
        flow = max(12, min(free - proc_min, max(need, free - min(proc_need, PROC_MAX))))
        label = "proto src → dst" if form == "full" else "proto :port ⇄ remote"
        return [Column("flow", label, flow), *nums, Column("process", "process", max(7, free - flow))], form
    cols = []
    if kind == "wide":
        cols.append(Column("iface", "iface", 12))
    cols += [Column("state", "state", 6), Column("proto", "proto", 5)]
    rest = [
        Column("bps", s("bytes/s", "bps"), 11, True),
        Column("pps", s("pkts/s", "pps"), 7, True),
        Column("bytes", s("total", "bytes"), 10, True),
        Column("retransmits", s("retrans", "retransmits"), 8, True),
        Column("connect_latency_ms", s("connect", "connect_latency_ms"), 8, True),
        Column("process", "process", 22 if kind == "wide" else 18),
        Column("service", "service", 20 if kind == "wide" else 14),
    ]
    room = width - sum(c.width + 1 for c in cols + rest) - 1
    wheres = [len(w) for f in flows if (w := where_text(f, identity))]
    where = Column("where", "where", min(max([10, *wheres]), WHERE_MAX))
    need = max([WHERE_FLOW_MIN] + [len(full_flow(f)) for f in flows])
    if wheres and room - where.width - 1 >= need:
        rest.insert(-1, where)  # between the process and its service
        room -= where.width + 1
    return [*cols, Column("flow", "src:sport → dst:dport", max(20, room)), *rest], "full"


def flow_row(
    f: FlowRow, columns: Sequence[Column], form: str, now: float, identity: Lookup = no_identity
) -> Row:
    """One connection's row, or a fold's. Ended ones are dimmed; in the compact layout
    (no state column) a lone ended connection is marked `✕`."""
    compact = columns[0].key == "flow"
    has_where = any(c.key == "where" for c in columns)
    done = isinstance(f, FlowFold) or ended(f, now)
    cells: list[Cell] = []
    for c in columns:
        k = c.key
        if k == "flow":
            text = full_flow(f) if form == "full" else local_flow(f)
            if compact:
                text = f"{f.proto} {_mark(f, now)}{text}"
            cells.append((squeeze(text, c.width), "$text-muted" if done else ""))
        elif k == "iface":
            cells.append((squeeze(ifaces_text(f), c.width), ""))
        elif k == "state":
            cells.append((state_text(f, now), "bold" if isinstance(f, FlowFold) else "$text-muted"))
        elif k == "proto":
            cells.append((f.proto, ""))
        elif k == "bps":
            cells.append((short_size(f.bps) if compact else fmt.rate(f.bps), "bold"))
        elif k == "pps":
            cells.append((count(f.pps), ""))
        elif k == "bytes":
            cells.append((short_size(f.bytes) if compact else fmt.size(f.bytes), ""))
        elif k == "retransmits":
            cells.append((count(f.retransmits), "$warning" if f.retransmits else "$text-muted"))
        elif k == "connect_latency_ms":
            cells.append((ms(f.connect_latency_ms), ""))
        elif k == "process":
            # Compact has no service column: the process cell carries it as room allows;
            # without a where column, the cell carries that too.
            if compact:
                text = process_text(f, c.width, identity)
            else:
                extras = FULL_EXTRAS[:2] if has_where else FULL_EXTRAS
                text = process_text(f, c.width, identity, extras)
            cells.append((squeeze(text, c.width), ""))
        elif k == "where":
            cells.append((squeeze(where_text(f, identity) or fmt.NO_DATA, c.width), ""))
        elif k == "service":
            service = f.common("service") if isinstance(f, FlowFold) else f.service
            cells.append((squeeze(service or fmt.NO_DATA, c.width), ""))
        else:
            raise AssertionError(k)
    return Row(flow_key(f), tuple(cells))


def _none_last(value: Any, tie: int) -> tuple[bool, Any, int]:
    return (value is not None, value if value is not None else 0, tie)


def groups(flows: Iterable[FlowRecord], by: str, sort: str, identity: Lookup = no_identity) -> list[GroupRow]:
    flows = list(flows)
    worst: dict[str, float] = {}
    for f in flows:
        if f.connect_latency_ms is not None:
            k = group_key(f, by, identity)
            worst[k] = max(worst.get(k, 0.0), f.connect_latency_ms)
    rows = [GroupRow(by, g, worst.get(g.key)) for g in group_flows(flows, by, identity)]

    def value(r: GroupRow) -> Any:
        return r.connect_latency_ms if sort == "connect_latency_ms" else getattr(r.group, sort)

    return sorted(rows, key=lambda r: _none_last(value(r), r.group.bytes), reverse=True)


def group_columns(width: int, by: str, sort: str) -> list[Column]:
    def s(label: str, key: str) -> str:
        return _sort_cell(label, key, sort)

    if layout(width) == "compact":
        nums = [
            Column("flows", "flows", 5, True),
            Column("bps", s("B/s", "bps"), 5, True),
            Column("pps", s("pkt/s", "pps"), 6, True),
            Column("bytes", s("total", "bytes"), 6, True),
            Column("retransmits", s("rtx", "retransmits"), 4, True),
            Column("connect_latency_ms", s("conn", "connect_latency_ms"), 7, True),
        ]
    else:
        nums = [
            Column("flows", "flows", 6, True),
            Column("bps", s("bytes/s", "bps"), 11, True),
            Column("pps", s("pkts/s", "pps"), 7, True),
            Column("bytes", s("total", "bytes"), 10, True),
            Column("retransmits", s("retrans", "retransmits"), 8, True),
            Column("connect_latency_ms", s("max conn", "connect_latency_ms"), 9, True),
        ]
    room = width - sum(c.width + 1 for c in nums) - 1
    return [Column("key", by, max(12, room)), *nums]


def group_ident(r: GroupRow) -> tuple[Any, ...]:
    return ("group", r.by, r.group.key)


def group_row(r: GroupRow, columns: Sequence[Column], width: int) -> Row:
    g = r.group
    compact = layout(width) == "compact"
    cells: list[Cell] = []
    for c in columns:
        k = c.key
        if k == "key":
            cells.append((squeeze(g.key, c.width), "bold"))
        elif k == "flows":
            cells.append((str(g.flows), ""))
        elif k == "bps":
            cells.append((short_size(g.bps) if compact else fmt.rate(g.bps), "bold"))
        elif k == "pps":
            cells.append((count(g.pps), ""))
        elif k == "bytes":
            cells.append((short_size(g.bytes) if compact else fmt.size(g.bytes), ""))
        elif k == "retransmits":
            cells.append((count(g.retransmits), "$warning" if g.retransmits else "$text-muted"))
        elif k == "connect_latency_ms":
            cells.append((ms(r.connect_latency_ms), ""))
        else:
            raise AssertionError(k)
    return Row(group_ident(r), tuple(cells))


# --- the lines above the table -------------------------------------------------------


Part = tuple[str, str]


def fit(parts: Sequence[tuple[int, list[Part]]], width: int) -> list[Part]:
    """Keep the most important chunks (lowest priority number first) that fit `width`,
    in their original order."""
    chosen: set[int] = set()
    used = 0
    for i in sorted(range(len(parts)), key=lambda i: parts[i][0]):
        size = sum(len(t) for t, _ in parts[i][1]) + (2 if chosen else 0)
        if used + size <= width:
            chosen.add(i)
            used += size
    out: list[Part] = []
    for i, (_prio, chunk) in enumerate(parts):
        if i in chosen:
            if out:
                out.append(("  ", ""))
            out.extend(chunk)
    return out


def status_parts(
    sort: str,
    grouping: str,
    filter_text: str,
    shown: int,
    data: FlowsData,
    width: int,
    *,
    following: bool = False,
) -> list[Part]:
    """`s sort bytes/s  g group none  / filter port:443  8 of 31  enter detail`; with
    `home top` first when the operator's cursor follows its row instead of the top."""

    def key(k: str) -> Part:
        return (k, "bold $accent")

    ftext = filter_text.strip()
    room = max(8, width - 62)
    chunks: list[tuple[int, list[Part]]] = [
        (0, [key("s"), (" sort ", "$text-muted"), (SORT_LABELS.get(sort, sort), "bold")]),
        (1, [key("g"), (" group ", "$text-muted"), (grouping, "bold" if grouping != "none" else "")]),
        (
            0,
            [
                key("/"),
                (" filter ", "$text-muted"),
                (squeeze(ftext, room), "bold $warning") if ftext else ("none", ""),
            ],
        ),
        (2, [(f"{shown} of {len(data.flows)} shown", "")]),
        (4, [(f"{data.flows_tracked} tracked", "$text-muted")]),  # connections
        (3, [(fmt.rate(data.total_bps), "bold"), (" total", "$text-muted")]),
        (5, [key("enter"), (" detail", "$text-muted")]),
    ]
    if following:
        chunks.insert(
            0, (0, [("cursor follows your row ", "$warning"), key("home"), (" top", "$text-muted")])
        )
    return fit(chunks, width)


def counter_values(data: FlowsData) -> dict[str, int | None]:
    return {name: getattr(data, name) for name, _label, _sev in COUNTERS}


def counters_parts(data: FlowsData, growing: Iterable[str], width: int) -> list[Part]:
    """One line: every count of what the datapath could not count; growing ones loud."""
    growing = set(growing)
    chunks: list[tuple[int, list[Part]]] = [(0, [("drops:", "$text-muted")])]
    for name, label, sev in COUNTERS:
        value = getattr(data, name)
        if name == "lost_events":
            if value is None:
                why = "TCP events off" + (f": {data.tcp_events_error}" if data.tcp_events_error else "")
                chunks.append((1, [(squeeze(why, 60), "$warning")]))
                continue
            text = f"{label} {count(value)}"
            if data.events_total is not None:
                text += f" of {count(data.events_total + value)}"
        else:
            text = f"{label} {count(value)}"
        style = f"bold ${sev}" if name in growing else ("$warning" if value else "")
        chunks.append((0, [(text + (" ▲" if name in growing else ""), style)]))
    if data.max_flows:
        entries = data.flows_tracked if data.map_entries is None else data.map_entries
        chunks.append((2, [(f"map {entries}/{data.max_flows}", "$text-muted")]))
    return fit(chunks, width)


def problem_lines(data: FlowsData) -> list[str]:
    """Interfaces not attached and notices (e.g. leftovers removed at start)."""
    lines = [f"{i.name}: {i.error}" for i in data.ifaces if i.error]
    lines += list(data.notices)
    return lines


def event_lines(data: FlowsData, n: int, width: int) -> list[list[Part]]:
    """The latest TCP events, newest first, one line each (for a tall pane)."""
    head: list[Part] = [("latest TCP events", "bold")]
    if data.events_total is None:
        return [
            [*head, ("  off" + (f": {data.tcp_events_error}" if data.tcp_events_error else ""), "$warning")]
        ]
    events = list(data.recent_events)[-n:]
    if not events:
        return [[*head, ("  none in this sample", "$text-muted")]]
    lines = [head]
    for e in reversed(events):
        clock = time.strftime("%H:%M:%S", time.gmtime(e.time))
        what = e.kind + (f" {ms(e.ms)}" if e.ms is not None else "")
        text = f"{what:<17} {endpoint(e.src, e.sport, 'tcp')} → {endpoint(e.dst, e.dport, 'tcp')}"
        who = f"  {e.comm or '?'} [{e.pid}]" if e.pid is not None else ""
        room = max(10, width - 9)
        if len(text) + len(who) <= room:  # the process goes first when room is short
            text += who
        style = "$error" if e.kind in ("retransmit", "connect_fail") else ""
        lines.append([(clock + " ", "$text-muted"), (squeeze(text, room), style)])
    return lines
