"""Rules pane: every policy rule with packets, bytes, rate, last hit, expiry and author;
allow/deny rules that stay enforced after exit are flagged (◆).

`a` add, `e` edit, `d` delete, `t` count <-> deny: the editor validates live and
previews against the recent flows (`RELATED = ("flows",)`); every change is an action
request (`actions.rules_change`), so a deny states what it will drop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from ebpftop.actions import rules_change
from ebpftop.actions.rules_progress import PROGRESS, Applying
from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.core.model import Snapshot

from ...action_path import ActionRequest, Dialogs, Run, dashboard, through_gate
from ...text import clean
from ..base import SourcePane
from ..paint import set_content
from ..table import LineTable, Row
from .edit import RuleEditScreen, warm_while_editing
from .view import cells, columns, detail, recent_flows, summary, table_columns

KEYS = "↑↓ select"
KEYS_ACT = "  a: add  e: edit  d: delete  t: count/deny"
ACTING = frozenset({"add_rule", "edit_rule", "delete_rule", "toggle_rule"})
DONE_SHOWN = 5.0  # seconds the line says a change is done (the table follows at the next sample)


class RulesPane(SourcePane):
    source = "rules"
    title = "Rules"
    number = 2
    ABOUT = "Every policy rule with packets, bytes, rate and last hit."
    RELATED = ("flows",)  # the edit dialog previews a rule against the recent flows

    BINDINGS: ClassVar[list[BindingType]] = [
        # Not in the footer (80 columns keep the app's keys); the pane's key line names them.
        Binding(
            "a",
            "add_rule",
            "Add rule",
            show=False,
            tooltip="add a rule (validated, previewed, confirmed, audited)",
        ),
        Binding(
            "e", "edit_rule", "Edit rule", show=False, tooltip="edit the selected rule (confirmed, audited)"
        ),
        Binding(
            "d",
            "delete_rule",
            "Delete rule",
            show=False,
            tooltip="delete the selected rule (confirmed, audited)",
        ),
        Binding(
            "t",
            "toggle_rule",
            "count/deny",
            show=False,
            tooltip="switch the selected rule between count and deny (confirmed, audited)",
        ),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "cursor(-8)", show=False),
        Binding("pagedown", "cursor(8)", show=False),
    ]

    DEFAULT_CSS = """
    RulesPane #rules-view { height: 1fr; }
    RulesPane #rules-summary { height: auto; max-height: 3; }
    RulesPane #rules-keys { height: 1; color: $text-muted; }
    RulesPane #rules-table { height: 1fr; min-height: 3; }
    RulesPane #rules-detail { height: auto; max-height: 3; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: RulesData | None = None
        self.rows: list[RuleRecord] = []
        self._progress_timer: Timer | None = None
        self._since = time.monotonic()  # changes begun from then on are shown (on_mount sets it again)

    def compose_body(self) -> ComposeResult:
        with Vertical(id="rules-view", classes="data"):
            yield Static(Content(""), id="rules-summary", markup=False)
            yield Static(Content(""), id="rules-keys", markup=False)
            yield LineTable(id="rules-table", stripes=True)
            yield Static(Content(""), id="rules-detail", markup=False)

    # --- drawing -------------------------------------------------------------------

    def update_body(self, data: Any, snapshot: Snapshot, now: float) -> None:
        if not isinstance(data, RulesData):  # a foreign recording: the body says so
            self.data = None
            self.rows = []
            raise TypeError(f"expected rules data, got {type(data).__name__}")
        self.data = data
        set_content(self.query_one("#rules-summary", Static), Content.assemble(*summary(data)))
        self._draw_keys()
        self._fill_table(data, now)

    def _draw_keys(self) -> None:
        """The keys, or the change being applied (and for a moment after, how it went)."""
        if not self.is_mounted or (self.data is None and PROGRESS.state is None):
            return
        state = PROGRESS.state
        # a change begun before this pane was mounted (another dashboard in this process) is not its
        line = applying_text(state) if state is not None and state.started >= self._since else None
        if line is None:
            read_only = dashboard(self).read_only
            if self.data is not None and not self.data.rules:
                line = "no rules" + ("" if read_only else "  a: add a rule")
            else:
                line = KEYS + ("" if read_only else KEYS_ACT)
        set_content(self.query_one("#rules-keys", Static), Content(line))

    def on_mount(self) -> None:
        # (SourcePane.on_mount runs as well: Textual calls each class's handler.)
        self._since = time.monotonic()
        PROGRESS.listen(self._progress_changed)

    def on_unmount(self) -> None:
        PROGRESS.unlisten(self._progress_changed)

    def _progress_changed(self) -> None:
        """A change began or ended (on the loop): tick the line while it runs, and a while after."""
        if self._progress_timer is None:
            self._progress_timer = self.set_interval(0.5, self._progress_tick)
        self._draw_keys()

    def _progress_tick(self) -> None:
        self._draw_keys()
        if applying_text(PROGRESS.state) is None and self._progress_timer is not None:
            self._progress_timer.stop()
            self._progress_timer = None

    def _fill_table(self, data: RulesData, now: float) -> None:
        table = self.query_one("#rules-table", LineTable)
        keep = self.selected()
        width = max(40, (self.content_size.width or 80) - 1)
        cols = columns(width)
        rules = list(data.rules)
        self.rows = rules
        at = table.cursor
        if keep is not None:
            at = next((i for i, r in enumerate(rules) if r.id == keep.id), at)
        table.show(
            table_columns(cols), len(rules), lambda i: Row((rules[i].id,), cells(rules[i], cols, now)), at
        )
        self._draw_detail()

    def _draw_detail(self) -> None:
        rec = self.selected()
        set_content(
            self.query_one("#rules-detail", Static),
            Content.assemble(*detail(rec, self._now)) if rec is not None else Content(""),
        )

    def on_line_table_moved(self, event: LineTable.Moved) -> None:
        event.stop()
        self._draw_detail()

    def on_resize(self) -> None:
        self.call_after_refresh(self._rerender)

    # --- selection -----------------------------------------------------------------

    def selected(self) -> RuleRecord | None:
        if not self.rows:
            return None
        row = self.query_one("#rules-table", LineTable).cursor
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#rules-table", LineTable)
        if self.rows:
            table.move_cursor(table.cursor + delta)
            self._draw_detail()

    def select_rule(self, rule_id: int) -> bool:
        at = next((i for i, r in enumerate(self.rows) if r.id == rule_id), None)
        if at is None:
            return False
        self.query_one("#rules-table", LineTable).move_cursor(at)
        self._draw_detail()
        return True

    # --- changes, through the app's action path ----------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the changing keys are hidden and inert read-only; the action path would refuse them too
        return not (action in ACTING and dashboard(self).read_only)

    def recent_flows(self) -> list[FlowRecord]:
        return recent_flows(self.feed.related.get("flows", ()))

    def _request(
        self, kind: str, title: str, prepare: Callable[[Dialogs, RuleRecord | None], Awaitable[Run | None]]
    ) -> None:
        """One rules change for the action path; the selection is read when it runs."""

        async def ready(dialogs: Dialogs) -> Run | None:
            if self.replay_or_no_data(dialogs):
                return None
            rec = self.selected()
            if kind != "rules.add" and rec is None:
                dialogs.say("no rule selected", severity="warning")
                return None
            return await prepare(dialogs, rec)

        dashboard(self).act(ActionRequest(kind, title, ready, failed_prefix="rules: nothing changed"))

    def replay_or_no_data(self, dialogs: Dialogs) -> bool:
        if dashboard(self).replay is not None:
            dialogs.say("a replay cannot change rules", severity="warning", timeout=None)
            return True
        if self.data is None:
            dialogs.say(
                "rules unavailable: the rules source has no data (see its health line)",
                severity="warning",
                timeout=None,
            )
            return True
        return False

    def action_add_rule(self) -> None:
        async def prepare(dialogs: Dialogs, _rec: RuleRecord | None) -> Run | None:
            settings = dashboard(self).settings
            warm_while_editing(settings)
            rule = await dialogs.ask(self._editor("Add rule (last, lowest priority)", len(self.rows)))
            if rule is None:
                dialogs.say("no rule added")
                return None
            earlier = rules_change.current_rules(self.rows)
            return through_gate(
                *await rules_change.add(settings, rule, earlier, self.recent_flows(), dialogs.actor)
            )

        self._request("rules.add", "Add rule", prepare)

    def action_edit_rule(self) -> None:
        async def prepare(dialogs: Dialogs, rec: RuleRecord | None) -> Run | None:
            assert rec is not None
            rows = list(self.rows)
            warm_while_editing(dashboard(self).settings)
            rule = await dialogs.ask(self._editor(f"Edit rule {rec.id}", rec.position, rec.text))
            if rule is None:
                dialogs.say(f"rule {rec.id} unchanged")
                return None
            return through_gate(
                *await rules_change.edit(
                    dashboard(self).settings, rec, rule, rows, self.recent_flows(), dialogs.actor
                )
            )

        self._request("rules.edit", "Edit rule", prepare)

    def action_delete_rule(self) -> None:
        async def prepare(dialogs: Dialogs, rec: RuleRecord | None) -> Run | None:
            assert rec is not None
            return through_gate(*await rules_change.delete(dashboard(self).settings, rec, dialogs.actor))

        self._request("rules.delete", "Delete rules", prepare)

    def action_toggle_rule(self) -> None:
        async def prepare(dialogs: Dialogs, rec: RuleRecord | None) -> Run | None:
            assert rec is not None
            if rules_change.toggled(rec.action) is None:
                dialogs.say(
                    f"rule {rec.id} is {clean(rec.action, 10)}: t switches count and deny; e edits it",
                    severity="warning",
                    timeout=5,
                )
                return None
            rows, flows = list(self.rows), self.recent_flows()
            return through_gate(
                *await rules_change.toggle(dashboard(self).settings, rec, rows, flows, dialogs.actor)
            )

        self._request("rules.action", "Change a rule's action", prepare)

    def _editor(self, title: str, position: int, initial: str = "") -> RuleEditScreen:
        flows = self.recent_flows()
        earlier = rules_change.current_rules([r for r in self.rows if r.position < position])
        return RuleEditScreen(title, lambda rule: rules_change.editor_preview(rule, flows, earlier), initial)


def applying_text(state: Applying | None) -> str | None:
    """'⟳ Add rule: compiling ... (3 s)' while a change runs; '✔ Add rule: done in 6.1 s'
    (or ✖ failed) for a few seconds after; None otherwise."""
    if state is None:
        return None
    secs = state.seconds()
    if state.ended is None:
        return f"⟳ {state.title}: {state.step} ({secs:.0f} s)"
    if time.monotonic() - state.ended > DONE_SHOWN:
        return None
    if state.ok:
        return f"✔ {state.title}: done in {secs:.1f} s"
    return f"✖ {state.title}: failed after {secs:.1f} s (the message says why; nothing changed)"
