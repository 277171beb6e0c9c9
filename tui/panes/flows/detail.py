"""Enter on a Flows row: the connection's (or fold's, or group's) rate history as a
plotext chart, the processes at both ends with their whole identity (service, version,
netns, cgroup, unit, container, pod...), the interfaces that saw it with what each
counted, and its recent TCP events, in a dialog that scrolls (80x24 loses nothing).

Only history up to the snapshot on show is charted, so a paused screen shows nothing
newer; a tick where the flow was not among the top flows is left out, never drawn as 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.flows.model import FlowPath, FlowRecord, FlowsData, TcpEvent
from ebpftop.collectors.flows.view import FoldKey, Lookup, ended, fold_key, group_key, no_identity, sum_known
from ebpftop.collectors.identity.model import Identity
from ebpftop.core.model import Snapshot

from ...screens.detail import DetailScreen
from ...text import clean
from .. import fmt
from ..fmt import Part
from .view import FlowKey, count, endpoint, flow_key, full_flow, ms, state_text

MAX_EVENTS = 40
MAX_MEMBERS = 12
MAX_OWNERS = 6  # pairs of ends listed for a group or fold


@dataclass(frozen=True)
class Selection:
    """What the dialog is about: one connection (by key), the ended connections of one
    fold (as of each snapshot's time), or one group (by its key, among the flows that
    pass `accept`)."""

    title: str
    flow: FlowKey | None = None
    by: str | None = None
    group: str | None = None
    accept: Callable[[FlowRecord, Lookup], bool] = field(default=lambda f, i: True, compare=False)
    fold: FoldKey | None = None

    def matches(self, f: FlowRecord, now: float, identity: Lookup = no_identity) -> bool:
        """`identity`: the owners of the snapshot `f` is from (groups and filters by pod,
        unit... read them)."""
        if self.flow is not None:
            return flow_key(f) == self.flow
        if self.fold is not None:
            return fold_key(f) == self.fold and ended(f, now) and self.accept(f, identity)
        return (
            self.accept(f, identity) and self.by is not None and group_key(f, self.by, identity) == self.group
        )


@dataclass(frozen=True)
class Point:
    t: float
    bps: float | None
    pps: float | None


@dataclass(frozen=True)
class DetailView:
    selection: Selection
    points: tuple[Point, ...]
    members: tuple[FlowRecord, ...]  # in the newest snapshot
    events: tuple[TcpEvent, ...]  # oldest first
    now: float
    identity: Lookup = no_identity  # the owners in the newest snapshot


def rate_history(history: Sequence[Snapshot], sel: Selection, until: float) -> list[Point]:
    points = []
    for snap in history:
        data = snap.data
        if snap.time > until or not isinstance(data, FlowsData):
            continue
        members = [f for f in data.flows if sel.matches(f, snap.time, data.identity)]
        if members:
            points.append(
                Point(snap.time, sum_known(f.bps for f in members), sum_known(f.pps for f in members))
            )
    return points


def _same_connection(e: TcpEvent, f: FlowRecord) -> bool:
    la, lp, ra, rp = f.local_remote()
    ends = {(e.src, e.sport), (e.dst, e.dport)}
    return ends == {(la, lp), (ra, rp)}


def flow_events(members: Sequence[FlowRecord], data: FlowsData) -> list[TcpEvent]:
    """The members' own recent events and the payload's recent events on the same
    connections, once each, oldest first."""
    seen: dict[tuple[float, str, str, int, str, int], TcpEvent] = {}
    for f in members:
        for e in f.events:
            seen.setdefault((e.time, e.kind, e.src, e.sport, e.dst, e.dport), e)
        if f.proto == "tcp":
            for e in data.recent_events:
                if _same_connection(e, f):
                    seen.setdefault((e.time, e.kind, e.src, e.sport, e.dst, e.dport), e)
    return sorted(seen.values(), key=lambda e: e.time)[-MAX_EVENTS:]


def build(history: Sequence[Snapshot], shown: Snapshot, sel: Selection) -> DetailView:
    data = shown.data
    if not isinstance(data, FlowsData):
        return DetailView(sel, tuple(rate_history(history, sel, shown.time)), (), (), shown.time)
    members = tuple(f for f in data.flows if sel.matches(f, shown.time, data.identity))
    events = tuple(flow_events(members, data)) if members else ()
    points = tuple(rate_history(history, sel, shown.time))
    return DetailView(sel, points, members, events, shown.time, data.identity)


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}"


def summary(view: DetailView) -> Content:
    m = view.members
    if not m:
        return Content.assemble(
            (
                "not among the top flows in the latest sample (it may have ended); "
                "the chart shows when it was",
                "$warning",
            )
        )
    parts: list[Part] = [
        ("now ", "$text-muted"),
        (fmt.rate(sum_known(f.bps for f in m)), "bold"),
        "  ",
        (count(sum_known(f.pps for f in m)) + " pkt/s", "bold"),
        ("   total ", "$text-muted"),
        fmt.size(sum(f.bytes for f in m)),
        f" in {count(sum(f.packets for f in m))} pkts",
        ("   retransmits ", "$text-muted"),
        (str(sum(f.retransmits for f in m)), "bold $warning" if any(f.retransmits for f in m) else ""),
    ]
    latency = [f.connect_latency_ms for f in m if f.connect_latency_ms is not None]
    parts += [("   connect ", "$text-muted"), ms(max(latency) if latency else None)]
    first = min(f.first_seen for f in m)
    parts += [
        ("\nfirst seen ", "$text-muted"),
        clock(first),
        f" ({fmt.duration(view.now - first)} ago)",
        ("   last ", "$text-muted"),
        clock(max(f.last_seen for f in m)),
    ]
    return Content.assemble(*parts)


def identity_parts(
    who: Identity | None, pid: int | None, comm: str | None, service: str | None
) -> list[Part]:
    """`pid 100  comm nginx  service web  netns lab-a  unit …`: the whole identity, else
    what the record itself knows."""
    parts: list[Part] = [("pid ", "$text-muted"), str(pid) if pid is not None else fmt.NO_DATA]
    pairs = (
        who.pairs() if who is not None else [(k, v) for k, v in (("comm", comm), ("service", service)) if v]
    )
    for name, value in pairs:
        parts += [(f"  {name} ", "$text-muted"), clean(value, 120)]
    return parts


def _ends(f: FlowRecord, single: bool) -> tuple[str, str]:
    """Labels of this end and the other: their addresses for one connection."""
    if not single:
        return "this end", "other end"
    local, lport, remote, rport = f.local_remote()
    return endpoint(local, lport, f.proto), endpoint(remote, rport, f.proto)


def process_lines(view: DetailView) -> Content:
    """Each pair of ends once: this end's process (the record's pid) and, when the other
    end is a socket on this node too, the peer's, each with its whole identity."""
    pairs: dict[tuple[int | None, str | None, str | None, int | None], FlowRecord] = {}
    for f in view.members:
        pairs.setdefault((f.pid, f.comm, f.service, f.peer_pid), f)
    if not pairs:
        return Content.assemble(("—", "$text-muted"))
    single = view.selection.flow is not None
    parts: list[Part] = []
    for (pid, comm, service, peer), f in list(pairs.items())[:MAX_OWNERS]:
        mine, theirs = _ends(f, single)
        if parts:
            parts.append("\n")
        parts += [(f"{clean(mine, 60)}  ", "bold"), *identity_parts(view.identity(pid), pid, comm, service)]
        parts += ["\n", (f"{clean(theirs, 60)}  ", "bold")]
        if peer is not None:
            parts += identity_parts(view.identity(peer), peer, None, None)
        else:
            parts.append(("not a socket on this node, or not seen", "$text-muted"))
    if len(pairs) > MAX_OWNERS:
        parts.append((f"\n… and {len(pairs) - MAX_OWNERS} more", "$text-muted"))
    if all(pid is None for pid, _c, _s, _p in pairs):
        parts += [("\nno process known: not a local socket, or it ended before it was seen", "$text-muted")]
    return Content.assemble(*parts)


def path_lines(view: DetailView) -> Content:
    """Each interface hook that saw the connection and what it counted there: the
    connection's own figures count a packet once, whichever hooks saw it."""
    parts: list[Part] = []
    for f in view.members[:1]:
        # recorded before connections were merged: the record was one hook, one way
        alone = FlowPath(f.iface, f.direction, True, f.packets, f.bytes, f.bps, f.pps)
        paths = f.paths or (alone,)
        # the figures before the addresses, which are long and may wrap at 80 columns
        name_w = max(len(clean(p.iface, 32)) for p in paths)
        for p in paths:
            if parts:
                parts.append("\n")
            way = f"{f.src} → {f.dst}" if p.forward else f"{f.dst} → {f.src}"
            parts += [
                (f"{clean(p.iface, 32):<{name_w}}", "bold"),
                (f" {clean(p.direction, 8):<7} ", "$text-muted"),
                (f"{fmt.rate(p.bps):>9}", "bold"),
                (f"  {count(p.packets)} pkts  {fmt.size(p.bytes)}  ", ""),
                clean(way, 90),
            ]
    if not parts:
        return Content.assemble(("—", "$text-muted"))
    return Content.assemble(*parts)


def member_lines(view: DetailView) -> Content:
    parts: list[Part] = []
    for f in view.members[:MAX_MEMBERS]:
        if parts:
            parts.append("\n")
        hooks = sorted({p.iface for p in f.paths} or {f.iface})
        parts += [
            clean(f"{f.proto} {full_flow(f)}", 120),
            ("  ", ""),
            (fmt.rate(f.bps), "bold"),
            (f"  {state_text(f, view.now)}  on {clean(', '.join(hooks), 64)}", "$text-muted"),
        ]
    if len(view.members) > MAX_MEMBERS:
        parts.append((f"\n… and {len(view.members) - MAX_MEMBERS} more", "$text-muted"))
    return Content.assemble(*parts)


def event_lines(view: DetailView) -> Content:
    if not view.events:
        tcp = any(f.proto == "tcp" for f in view.members)
        why = "none recorded for this flow" if tcp else "TCP events exist for TCP flows only"
        return Content.assemble((why, "$text-muted"))
    parts: list[Part] = []
    for e in reversed(view.events):  # newest first
        if parts:
            parts.append("\n")
        style = "$error" if e.kind in ("retransmit", "connect_fail") else ""
        parts += [
            (clock(e.time), "$text-muted"),
            "  ",
            (f"{e.kind:<12}", style),
            f" {ms(e.ms):>8}  ",
            clean(f"{e.src}:{e.sport} → {e.dst}:{e.dport}", 100),
        ]
        if e.pid is not None or e.comm:
            parts.append(
                (f"  {clean(e.comm or '?', 32)} [{e.pid if e.pid is not None else '?'}]", "$text-muted")
            )
    return Content.assemble(*parts)


class FlowDetailScreen(DetailScreen):
    DEFAULT_CSS = """
    FlowDetailScreen { align: center middle; }
    FlowDetailScreen > VerticalScroll {
        width: 100%; height: 100%; border: round $primary; background: $surface; padding: 0 1;
    }
    FlowDetailScreen .heading { text-style: bold; margin-top: 1; }
    FlowDetailScreen #flow-detail-title { color: $accent; text-style: bold; }
    """

    def __init__(self, view: DetailView) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        box = VerticalScroll(can_focus=False)
        box.border_title = "Flow detail"
        box.border_subtitle = "esc closes"
        with box:
            yield Static(Content(clean(self.view.selection.title, 300)), id="flow-detail-title", markup=False)
            yield Static(Content(""), id="flow-detail-summary", markup=False)
            # Imported here: plotting is not needed before the dashboard's first frame.
            from .chart import RateChart

            yield RateChart()
            yield Static("processes at both ends", classes="heading", markup=False)
            yield Static(Content(""), id="flow-detail-process", markup=False)
            if self.view.selection.flow is not None:
                yield Static("seen on (each packet counted once above)", classes="heading", markup=False)
                yield Static(Content(""), id="flow-detail-paths", markup=False)
            else:
                yield Static("flows", classes="heading", markup=False)
                yield Static(Content(""), id="flow-detail-members", markup=False)
            yield Static("recent TCP events (newest first)", classes="heading", markup=False)
            yield Static(Content(""), id="flow-detail-events", markup=False)

    def on_mount(self) -> None:
        self.show(self.view)

    def show(self, view: DetailView) -> None:
        self.view = view
        self.query_one("#flow-detail-summary", Static).update(summary(view))
        from .chart import RateChart

        self.query_one(RateChart).draw(view.points)
        self.query_one("#flow-detail-process", Static).update(process_lines(view))
        if view.selection.flow is not None:
            self.query_one("#flow-detail-paths", Static).update(path_lines(view))
        else:
            self.query_one("#flow-detail-members", Static).update(member_lines(view))
        self.query_one("#flow-detail-events", Static).update(event_lines(view))

    def text(self) -> str:
        """What the dialog shows, as plain text (for tests)."""
        return "\n".join(str(w.render()) for w in self.query(Static))
