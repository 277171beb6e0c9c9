"""Fleet pane: every node whose agent the fleet's Prometheus scrapes, worst first (agents
down, failing canaries, outliers against the other nodes), each with why.

`s` sorts by a column instead, `/` filters the flow columns by service, namespace or
pod (the collector queries with it: `set_filter`, handed over by the app), Enter opens
the node: every column beside the fleet's median and how to reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.fleet.filter import HELP, FilterError, FleetFilter, parse
from ebpftop.collectors.fleet.model import FleetData, FleetNode
from ebpftop.core.model import Snapshot

from ...action_path import dashboard
from ...screens.prompt import PromptScreen
from ...text import clean
from ..base import SourcePane
from ..paint import set_content
from ..table import LineTable, Row
from .detail import FleetNodeScreen
from .view import SORTS, cells, columns, keys_line, sorted_nodes, summary, table_columns


class FleetPane(SourcePane):
    source = "fleet"
    title = "Fleet"
    number = 1
    ABOUT = (
        "Every node whose ebpftop agent this Prometheus scrapes, worst first: agents down, failing "
        "canaries, then nodes far from the others in retransmits, connect latency or failures, traffic "
        "or rule hits."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_node", "Node", show=False, tooltip="the node's columns and how to reach it"),
        Binding("s", "cycle_sort", "Sort", show=False, tooltip="sort by the next column"),
        Binding("slash", "filter", "Filter", show=False, tooltip="filter by service, namespace or pod"),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "cursor(-8)", show=False),
        Binding("pagedown", "cursor(8)", show=False),
        Binding("home", "cursor(-100000)", show=False),
    ]

    DEFAULT_CSS = """
    FleetPane #fleet-view { height: 1fr; }
    FleetPane #fleet-summary { height: auto; max-height: 4; }
    FleetPane #fleet-keys { height: 1; color: $text-muted; }
    FleetPane #fleet-table { height: 1fr; min-height: 3; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: FleetData | None = None
        self.rows: list[FleetNode] = []
        self.sort = "worst"
        self.pending_filter: str | None = None
        self._wanted: str | None = None  # the node the operator placed the cursor on
        # the collector's filter setter, handed over by the app (None: a replay, no collector)
        self.set_filter: Callable[[FleetFilter], None] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="fleet-view", classes="data"):
            yield Static(Content(""), id="fleet-summary", markup=False)
            yield Static(Content(""), id="fleet-keys", markup=False)
            yield LineTable(id="fleet-table", stripes=True)

    def update_body(self, data: Any, snapshot: Snapshot, now: float) -> None:
        if not isinstance(data, FleetData):
            self.data, self.rows = None, []
            raise TypeError(f"expected fleet data, got {type(data).__name__}")
        self.data = data
        if self.pending_filter == data.filter:
            self.pending_filter = None
        self._draw()

    def _draw(self) -> None:
        data = self.data
        if data is None:
            return
        set_content(
            self.query_one("#fleet-summary", Static),
            Content.assemble(*summary(data, self.sort, self.pending_filter)),
        )
        set_content(self.query_one("#fleet-keys", Static), Content(keys_line(self.sort)))
        table = self.query_one("#fleet-table", LineTable)
        rows = sorted_nodes(data, self.sort)
        self.rows = rows
        width = max(40, (self.content_size.width or 80) - 1)
        cols = columns(width)
        at = 0
        if self._wanted is not None:
            at = next((i for i, n in enumerate(rows) if n.name == self._wanted), table.cursor)
        table.show(
            table_columns(cols, self.sort),
            len(rows),
            lambda i: Row((rows[i].name,), cells(rows[i], cols)),
            at,
        )

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    # --- selection -------------------------------------------------------------------

    def selected(self) -> FleetNode | None:
        i = self.query_one("#fleet-table", LineTable).cursor
        return self.rows[i] if 0 <= i < len(self.rows) else None

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#fleet-table", LineTable)
        if not self.rows:
            return
        if table.cursor + delta <= 0 and delta < -1:
            self._wanted = None  # Home: unattended again, the worst node on top selected
            table.move_cursor(0)
            return
        table.move_cursor(table.cursor + delta)
        node = self.selected()
        self._wanted = node.name if node is not None else None

    def on_line_table_moved(self, event: LineTable.Moved) -> None:
        event.stop()
        node = self.selected()
        self._wanted = node.name if node is not None else None

    def on_line_table_selected(self, event: LineTable.Selected) -> None:
        event.stop()
        self.action_open_node()

    # --- keys ------------------------------------------------------------------------

    def action_open_node(self) -> None:
        node, data = self.selected(), self.data
        if node is None or data is None:
            self.notify("no node selected", severity="warning", timeout=3)
            return
        s = dashboard(self).settings
        self.app.push_screen(FleetNodeScreen(node, data, s.fleet_ssh_template, s.fleet_connect_template))

    def action_cycle_sort(self) -> None:
        keys = [k for k, _ in SORTS]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self._draw()

    def action_filter(self) -> None:
        if self.set_filter is None:
            self.notify("a replay cannot change the fleet's queries", severity="warning", timeout=4)
            return
        current = (
            self.pending_filter
            if self.pending_filter is not None
            else (self.data.filter if self.data else "")
        )

        def apply(text: str | None) -> None:
            if text is None or self.set_filter is None:
                return
            try:
                flt = parse(text)
            except FilterError as exc:
                self.notify(clean(f"filter unchanged: {exc}", 300), severity="error", timeout=8)
                return
            self.set_filter(flt)
            self.pending_filter = flt.text
            self._draw()

        self.app.push_screen(
            PromptScreen(
                "Filter the fleet", f"{HELP}. Now: {current or '(none)'}; empty clears it.", current
            ),
            apply,
        )
