"""Flows pane: top flows by rate, sorted (`s`), filtered (`/`), grouped (`g`), a detail per
flow (Enter), and the datapath's own losses always on one line (a counter that grows is
an alarm, collectors/flows/model.py).

Redraws are cheap: only cells whose text changed are updated, and columns are rebuilt
only when the layout, sort or grouping changes. Paused, no data arrives, but sort,
filter and grouping still apply to what is on screen.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from ebpftop.collectors.flows.filter import Filter, parse
from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.flows.view import next_sort, sort_flows
from ebpftop.core.model import Snapshot

from ...text import clean, safe
from ..base import SourcePane
from ..paint import forget, set_content
from . import view as fv
from .detail import FlowDetailScreen, Selection, build
from .filter import FlowFilterScreen

MAX_ROWS = 500
TALL_FROM = 18  # content rows from which the latest TCP events show under the table
EVENT_LINES = 5


class FlowsPane(SourcePane):
    source = "flows"
    title = "Flows"
    number = 1
    ABOUT = "Top flows by rate: 5-tuple, bytes, packets, retransmits, connect latency, process."

    BINDINGS: ClassVar[list[BindingType]] = [
        # Not in the footer (80 columns keep the app's keys); the status line names them.
        Binding("s", "cycle_sort", "Sort", show=False, tooltip="sort by the next column"),
        Binding("g", "cycle_group", "Group", show=False, tooltip="group by process, service, remote address"),
        Binding(
            "slash", "filter", "Filter", show=False, tooltip="filter flows (port:443 proc:nginx 10.0.0.0/8)"
        ),
        Binding("enter", "detail", "Detail", show=False, tooltip="rate history, process and TCP events"),
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
    FlowsPane #flows-table { height: 1fr; min-height: 2; scrollbar-size-vertical: 1; }
    FlowsPane #flows-events { height: auto; max-height: 8; display: none; }
    FlowsPane.-tall #flows-events { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort = "bps"
        self.grouping = "none"
        self.filter: Filter = parse("")
        self.rows: list[fv.Row] = []
        self.records: list[Any] = []  # the FlowRecord or GroupRow behind each row
        self._columns: list[fv.Column] = []
        self._cells: list[tuple[fv.Cell, ...]] = []
        self._data: FlowsData | None = None
        self._shown: Snapshot | None = None
        self.growing: set[str] = set()  # the counters the feed's alarms say are growing
        self._detail: FlowDetailScreen | None = None
        # The row the operator chose: the cursor returns to it when it comes back into
        # the top flows after dropping out for a tick.
        self._wanted: tuple[Any, ...] | None = None
        self._theme_vars: dict[str, str] | None = None
        # How much drawing happened (tests check that unchanged data redraws nothing).
        self.cell_updates = 0
        self.rebuilds = 0

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="data"):
            yield Static(Content(""), id="flows-status", markup=False)
            yield Static(Content(""), id="flows-counters", markup=False)
            yield Static(Content(""), id="flows-problems", classes="-empty", markup=False)
            table: DataTable[Text] = DataTable(id="flows-table", cursor_type="row", cell_padding=0)
            table.can_focus = False  # the pane keeps the focus; its keys move the cursor
            yield table
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
        flows = self.filter.apply(data.flows)
        if self.grouping == "none":
            records: list[Any] = sort_flows(flows, self.sort)[:MAX_ROWS]
            columns, form = fv.flow_columns(width, self.sort, records)
            rows = [fv.flow_row(f, columns, form) for f in records]
        else:
            records = fv.groups(flows, self.grouping, self.sort)[:MAX_ROWS]
            columns = fv.group_columns(width, self.grouping, self.sort)
            rows = [fv.group_row(r, columns, width) for r in records]
        self._draw_lines(data, len(flows), width)
        self._draw_events(data, width)
        self._fill(columns, rows)
        self.records = records

    def _draw_lines(self, data: FlowsData, shown: int, width: int) -> None:
        status = fv.status_parts(self.sort, self.grouping, self.filter.text, shown, data, width)
        self._set("#flows-status", _content(status))
        counters = fv.counters_parts(data, self.growing, width)
        self._set("#flows-counters", _content(counters))
        problems = fv.problem_lines(data)
        box = self.query_one("#flows-problems", Static)
        box.set_class(not problems, "-empty")
        if problems:
            self._set("#flows-problems", Content("\n".join("▲ " + clean(p, 300) for p in problems)))

    def _set(self, selector: str, content: Content) -> None:
        set_content(self.query_one(selector, Static), content)

    def _draw_events(self, data: FlowsData, width: int) -> None:
        tall = (self.content_size.height or 0) >= TALL_FROM
        self.set_class(tall, "-tall")
        if not tall:
            return
        lines = fv.event_lines(data, EVENT_LINES, width)
        self._set("#flows-events", Content("\n").join(_content(line) for line in lines))

    def _text(self, cell: fv.Cell, column: fv.Column) -> Text:
        # The leading space is the gap between columns (the table has no cell padding,
        # so at 80 columns every character goes to data).
        text = safe(" " + cell[0], self._style(cell[1]))
        text.justify = "right" if column.right else "left"
        text.no_wrap = True
        return text

    def _style(self, style: str) -> str:
        """Rich Text cannot resolve Textual's `$variables`: look them up in the theme."""
        if "$" not in style:
            return style
        if self._theme_vars is None:
            self._theme_vars = self.app.get_css_variables()
        return " ".join(self._theme_vars.get(w[1:], "") if w.startswith("$") else w for w in style.split())

    def on_mount(self) -> None:
        # (SourcePane.on_mount runs as well: Textual calls each class's handler.)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: Any) -> None:
        self._theme_vars = None
        forget(self)
        self._columns = []  # redraw every cell in the new theme's colours
        self._draw()

    def _fill(self, columns: list[fv.Column], rows: list[fv.Row]) -> None:
        table = self.query_one("#flows-table", DataTable)
        selected = self._wanted or self.selected_ident()
        if columns != self._columns or not table.columns:
            table.clear(columns=True)
            for c in columns:
                table.add_column(
                    Text(" " + c.label, justify="right" if c.right else "left", style="bold"),
                    width=c.width + 1,
                    key=c.key,
                )
            self._columns = columns
            self._cells = []
            self.rebuilds += 1
        old = self._cells
        for i, row in enumerate(rows):
            if i < len(old):
                if row.cells == old[i]:
                    continue
                for c, cell, prev in zip(columns, row.cells, old[i], strict=True):
                    if cell != prev:
                        table.update_cell(f"r{i}", c.key, self._text(cell, c))
                        self.cell_updates += 1
            else:
                cells = (self._text(cell, c) for c, cell in zip(columns, row.cells, strict=True))
                table.add_row(*cells, key=f"r{i}")
                self.cell_updates += len(columns)
        for i in range(len(old) - 1, len(rows) - 1, -1):
            table.remove_row(f"r{i}")
        self._cells = [r.cells for r in rows]
        self.rows = rows
        if selected is not None:
            self._wanted = selected
            at = next((i for i, r in enumerate(rows) if r.ident == selected), None)
            if at is not None and at != table.cursor_row:
                table.move_cursor(row=at, animate=False)

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    # --- selection -------------------------------------------------------------------

    def selected_index(self) -> int | None:
        if not self.rows:
            return None
        row = self.query_one("#flows-table", DataTable).cursor_row
        return row if 0 <= row < len(self.rows) else None

    def selected_ident(self) -> tuple[Any, ...] | None:
        i = self.selected_index()
        return None if i is None else self.rows[i].ident

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#flows-table", DataTable)
        if self.rows:
            table.move_cursor(row=max(0, min(len(self.rows) - 1, table.cursor_row + delta)), animate=False)
            self._wanted = self.selected_ident()

    # --- keys ------------------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        self.sort = next_sort(self.sort)
        self._draw_or_status()

    def action_cycle_group(self) -> None:
        self.grouping = fv.next_grouping(self.grouping)
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

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._wanted = self.selected_ident()
        self.action_detail()

    def selection(self) -> Selection | None:
        i = self.selected_index()
        if i is None:
            return None
        rec = self.records[i]
        if self.grouping == "none":
            title = f"{rec.proto} {fv.full_flow(rec)}  {rec.direction} on {rec.iface}"
            return Selection(title, flow=fv.flow_key(rec))
        g = rec.group
        title = f"{self.grouping} {g.key}: {g.flows} flow{'s' if g.flows != 1 else ''}"
        if not self.filter.empty:
            title += f" matching {self.filter.text}"
        return Selection(title, by=self.grouping, group=g.key, accept=self.filter)

    def action_detail(self) -> None:
        sel = self.selection()
        if sel is None or self._shown is None:
            self.app.notify("no flow selected: no flows to show yet", timeout=3)
            return
        self._detail = FlowDetailScreen(build(self._history(), self._shown, sel))
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
