"""Flows pane: top connections by rate, sorted (`s`), filtered (`/`), grouped (`g`), a
detail per row (Enter), and the datapath's own losses always on one line (a counter that
grows is an alarm, collectors/flows/model.py). Ungrouped, ended connections fold per
owner, addresses and port, and take at most half of the first screen while live ones
remain (collectors/flows/view.py).

Drawing costs what the window shows, not how many flows there are: the table
(`LineTable`) builds only the rows on screen and repaints only the lines that changed.
Nobody has moved the cursor: the pane shows the top of its order (a wall display, the
first screen). The operator has: the cursor follows its flow, and the status line says
so until Home gives the top back. Paused, no data arrives, but sort, filter and grouping
still apply to what is on screen.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.flows.filter import Filter, parse
from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.flows.view import GROUPS, FlowFold, available_groups, fold_ended, next_sort, ordered
from ebpftop.core.model import Snapshot

from ...action_path import dashboard
from ...text import clean
from ..base import SourcePane
from ..paint import forget, set_content
from ..table import LineTable
from . import to_rule
from . import view as fv
from .detail import FlowDetailScreen, Selection, build
from .filter import FlowFilterScreen

TALL_FROM = 18  # content rows from which the latest TCP events show under the table
EVENT_LINES = 5


class FlowsPane(SourcePane):
    source = "flows"
    title = "Flows"
    number = 1
    ABOUT = "Top connections by rate, each once, ended ones folded: bytes, retransmits, latency, process."

    BINDINGS: ClassVar[list[BindingType]] = [
        # Not in the footer (80 columns keep the app's keys); the status line names them.
        Binding("s", "cycle_sort", "Sort", show=False, tooltip="sort by the next column"),
        Binding(
            "g",
            "cycle_group",
            "Group",
            show=False,
            tooltip="group by process, service, remote, pod, namespace, workload, unit, container, netns",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            show=False,
            tooltip="filter flows (port:443 proc:nginx 10.0.0.0/8 pod:web ns:shop unit:nginx container:3f2a)",
        ),
        Binding("enter", "detail", "Detail", show=False, tooltip="rate history, process and TCP events"),
        Binding(
            "r",
            "flow_rule",
            "Rule",
            show=False,
            tooltip="a count rule for this row in the rule editor (ctrl+t: deny)",
        ),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "cursor(-8)", show=False),
        Binding("pagedown", "cursor(8)", show=False),
        Binding("home", "cursor(-100000)", show=False),
        Binding("end", "cursor(100000)", show=False),
    ]

    DEFAULT_CSS = """
    FlowsPane > .body > Vertical.data { height: 1fr; }
    FlowsPane #flows-status { height: 1; }
    FlowsPane #flows-counters { height: 1; }
    FlowsPane #flows-problems { height: auto; max-height: 2; color: $warning; }
    FlowsPane #flows-problems.-empty { display: none; }
    FlowsPane #flows-table { height: 1fr; min-height: 2; }
    FlowsPane #flows-events { height: auto; max-height: 8; display: none; }
    FlowsPane.-tall #flows-events { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort = "bps"
        self.grouping = "none"
        self.filter: Filter = parse("")
        self.records: list[Any] = []  # the FlowRecord or GroupRow behind each row, in order
        self._shown_count = 0
        self._data: FlowsData | None = None
        self._shown: Snapshot | None = None
        self.growing: set[str] = set()  # the counters the feed's alarms say are growing
        self._detail: FlowDetailScreen | None = None
        # The row the operator chose (None: nobody did, the pane shows the top of its
        # order): the cursor returns to it when it comes back after dropping out a tick.
        self._wanted: tuple[Any, ...] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="data"):
            yield Static(Content(""), id="flows-status", markup=False)
            yield Static(Content(""), id="flows-counters", markup=False)
            yield Static(Content(""), id="flows-problems", classes="-empty", markup=False)
            yield LineTable(id="flows-table")
            # Only when the pane is tall (a 2x2 grid at 160x48): the latest TCP events.
            yield Static(Content(""), id="flows-events", markup=False)

    # --- drawing ---------------------------------------------------------------------

    def update_body(self, data: Any, snapshot: Snapshot, now: float) -> None:
        if not isinstance(data, FlowsData):
            raise TypeError(f"expected flows data, got {type(data).__name__}")
        self._data = data
        self._shown = snapshot
        self.growing = {str(a.detail["counter"]) for a in self.feed.alarms if a.kind == "counter_growing"}
        self._draw()
        self._refresh_detail()

    def table_width(self) -> int:
        # One column for the table's scrollbar, kept free so rows never shift.
        return max(40, (self.content_size.width or 76) - 1)

    def _draw(self) -> None:
        data = self._data
        if data is None:
            return
        width = self.table_width()
        who = data.identity
        flows = self.filter.apply(data.flows, who)
        table = self.query_one("#flows-table", LineTable)
        now = self._shown_time()
        records: list[Any] = (
            ordered(fold_ended(flows, now), self.sort, now, table.window)
            if self.grouping == "none"
            else fv.groups(flows, self.grouping, self.sort, who)
        )
        self.records = records
        table.place(len(records), self._cursor_for(records, table.cursor))
        # Only the rows in the window are built, and the compact layout fits them alone.
        shown = [records[i] for i in table.visible_rows()]
        self._draw_lines(data, len(flows), width)
        self._draw_events(data, width)
        if self.grouping == "none":
            columns, form = fv.flow_columns(width, self.sort, shown, now, who)
            table.show(columns, len(records), lambda i: fv.flow_row(records[i], columns, form, now, who))
        else:
            columns = fv.group_columns(width, self.grouping, self.sort)
            table.show(columns, len(records), lambda i: fv.group_row(records[i], columns, width))

    def _shown_time(self) -> float:
        """The time of the snapshot on show: ended-ness is judged as of then (paused, replayed)."""
        return self._shown.time if self._shown is not None else 0.0

    def _cursor_for(self, records: list[Any], current: int) -> int:
        """Unattended, the top row; placed by the operator, where its row went (or, while
        that row is out of the list, where the cursor was)."""
        wanted = self._wanted
        if wanted is None:
            return 0
        ident = fv.flow_key if self.grouping == "none" else fv.group_ident
        return next((i for i, r in enumerate(records) if ident(r) == wanted), current)

    def _draw_lines(self, data: FlowsData, shown: int, width: int) -> None:
        self._shown_count = shown
        self._draw_status()
        counters = fv.counters_parts(data, self.growing, width)
        self._set("#flows-counters", _content(counters))
        problems = fv.problem_lines(data)
        box = self.query_one("#flows-problems", Static)
        box.set_class(not problems, "-empty")
        if problems:
            self._set("#flows-problems", Content("\n".join("▲ " + clean(p, 300) for p in problems)))

    def _draw_status(self) -> None:
        data = self._data
        if data is None:
            return
        status = fv.status_parts(
            self.sort,
            self.grouping,
            self.filter.text,
            self._shown_count,
            data,
            self.table_width(),
            following=self.attended,
        )
        self._set("#flows-status", _content(status))

    def _set(self, selector: str, content: Content) -> None:
        set_content(self.query_one(selector, Static), content)

    def _draw_events(self, data: FlowsData, width: int) -> None:
        tall = (self.content_size.height or 0) >= TALL_FROM
        self.set_class(tall, "-tall")
        if not tall:
            return
        lines = fv.event_lines(data, EVENT_LINES, width)
        self._set("#flows-events", Content("\n").join(_content(line) for line in lines))

    def on_mount(self) -> None:
        # (SourcePane.on_mount runs as well: Textual calls each class's handler.)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: Any) -> None:
        forget(self)
        self.query_one("#flows-table", LineTable).refresh_styles()
        self._draw()

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    # --- selection -------------------------------------------------------------------

    def selected_index(self) -> int | None:
        i = self.query_one("#flows-table", LineTable).cursor
        return i if 0 <= i < len(self.records) else None

    def selected_ident(self) -> tuple[Any, ...] | None:
        i = self.selected_index()
        if i is None:
            return None
        rec = self.records[i]
        return fv.flow_key(rec) if self.grouping == "none" else fv.group_ident(rec)

    @property
    def attended(self) -> bool:
        """The operator placed the cursor: it follows its row (Home gives the top back)."""
        return self._wanted is not None

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#flows-table", LineTable)
        if not self.records:
            return
        if table.cursor + delta <= 0 and delta < -1:
            self._wanted = None  # Home (or a page up to the top): unattended again
            table.move_cursor(0)
        else:
            table.move_cursor(table.cursor + delta)
            self._wanted = self.selected_ident()
        self._draw_status()

    def on_line_table_moved(self, event: LineTable.Moved) -> None:
        event.stop()
        self._wanted = self.selected_ident()
        self._draw_status()

    # --- keys ------------------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        self.sort = next_sort(self.sort)
        self._draw_or_status()

    def action_cycle_group(self) -> None:
        # Identity keys nobody has (no Kubernetes API: no pods) are skipped.
        offered = available_groups(self._data.owners) if self._data is not None else GROUPS
        self.grouping = fv.next_grouping(self.grouping, offered)
        self._wanted = None  # the rows are other things now: start from the top
        self._draw_or_status()

    def _draw_or_status(self) -> None:
        if self._data is not None:
            self._draw()
        else:
            self.app.notify(
                f"sort {fv.SORT_LABELS[self.sort]}, group {self.grouping} (no flows yet)", timeout=3
            )

    def action_filter(self) -> None:
        self.app.push_screen(FlowFilterScreen(self.filter.text), self._set_filter)

    def _set_filter(self, text: str | None) -> None:
        if text is None:
            return  # cancelled: the current filter stays
        self.filter = parse(text)  # the dialog only returns text that parses
        self._draw()

    def on_line_table_resized(self, event: LineTable.Resized) -> None:
        event.stop()
        self._draw()

    def on_line_table_selected(self, event: LineTable.Selected) -> None:
        event.stop()
        self._wanted = self.selected_ident()
        self._draw_status()
        self.action_detail()

    def selection(self) -> Selection | None:
        i = self.selected_index()
        if i is None:
            return None
        rec = self.records[i]
        if isinstance(rec, FlowFold):
            title = f"{rec.proto} {fv.full_flow(rec)}: {rec.connections} ended connections of {rec.owner}"
            if not self.filter.empty:
                title += f" matching {self.filter.text}"
            return Selection(title, fold=rec.key, accept=self.filter)
        if self.grouping == "none":
            title = f"{rec.proto} {fv.full_flow(rec)}  first seen {rec.direction} on {rec.iface}"
            return Selection(title, flow=fv.flow_key(rec))
        g = rec.group
        title = f"{self.grouping} {g.key}: {g.flows} flow{'s' if g.flows != 1 else ''}"
        if not self.filter.empty:
            title += f" matching {self.filter.text}"
        return Selection(title, by=self.grouping, group=g.key, accept=self.filter)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # r changes rules: hidden and inert read-only (the action path would refuse it too)
        return not (action == "flow_rule" and dashboard(self).read_only)

    def action_flow_rule(self) -> None:
        """r: the rule editor with a count rule matching the selected row (tui/panes/flows/to_rule.py)."""
        self._flow_rule(self.selection())

    def _flow_rule(self, sel: Selection | None, remote: bool = False) -> None:
        data, now = self._data, self._shown_time()

        def members() -> list[Any]:
            if sel is None or not data:
                return []
            return [f for f in data.flows if sel.matches(f, now, data.identity)]

        to_rule.request(self, sel, members, self._history(), remote=remote)

    def action_detail(self) -> None:
        sel = self.selection()
        if sel is None or self._shown is None:
            self.app.notify("no flow selected: no flows to show yet", timeout=3)
            return
        # (the detail's r: the rule for its remote, tui/panes/flows/to_rule.py)
        self._detail = to_rule.FlowDetailWithRule(
            build(self._history(), self._shown, sel), lambda: self._flow_rule(sel, remote=True)
        )
        self.app.push_screen(self._detail, lambda _r: self._forget_detail())

    def _forget_detail(self) -> None:
        self._detail = None

    def _history(self) -> tuple[Snapshot, ...]:
        return self.feed.history

    def _refresh_detail(self) -> None:
        detail = self._detail
        if detail is None or self._shown is None or detail not in self.app.screen_stack:
            return
        detail.show(build(self._history(), self._shown, detail.view.selection))


def _content(parts: list[fv.Part]) -> Content:
    """One line of (text, style) parts; the texts may come from outside: cleaned."""
    return Content.assemble(*((clean(text), style) for text, style in parts))
