"""The rule editor behind `a` (add) and `e` (edit) in the Rules pane.

One input line, validated as it is typed with the real parser: a bad rule shows the
parser's column, the offending term and the reason, with a caret under the column,
and Enter does nothing but say so. A good rule shows what it means in words and what
it would have matched in the recent flows (`preview`), so the operator sees what a
deny would drop before the confirmation screen. Ctrl+T turns the rule into a deny with
a TTL (15 minutes unless it has one) and back into a count: from a flow, count then
deny is one key. The screen dismisses with the Rule (or None on escape); applying it is
the pane's job, through the action gate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ebpftop.actions import rules_change
from ebpftop.collectors.rules.grammar import MAX_LINE, RuleError, parse_rule
from ebpftop.collectors.rules.spec import Rule, format_duration, format_rule
from ebpftop.core.settings import Settings

from ...screens.text_input import TextInput
from ...text import clean, plain

GRAMMAR = (
    "ACTION [tcp|udp|icmp] [from ADDR [port N[-M]]] [to ADDR [port N[-M]]] "
    '[on IFACE] [in|out] [ttl 15m] ["comment"]'
)
EXAMPLE = 'e.g. deny tcp from 203.0.113.0/24 to any port 6379 ttl 15m "scraper"'
CARET_ROOM = 68  # characters of the rule shown above the caret
DENY_TTL = 15 * 60.0  # ctrl+t: a deny that ends by itself unless the rule says how long


def deny_or_count(rule: Rule) -> Rule:
    """Ctrl+T: a count (or allow) becomes a deny with a TTL; a deny becomes a count."""
    if rule.action == "deny":
        return rule.with_(action="count")
    return rule.with_(action="deny", ttl=rule.ttl or DENY_TTL)


def caret_lines(text: str, col: int, room: int = CARET_ROOM) -> tuple[str, str]:
    """The part of `text` around 1-based `col`, and a caret line pointing at it."""
    at = max(0, col - 1)
    start = max(0, at - room + 8) if at >= room - 4 else 0
    shown = clean(text[start : start + room])
    # clean() may widen characters before the column (an escaped control character)
    pad = len(clean(text[start:at])) if at <= len(text) else len(clean(text[start:])) + (at - len(text))
    return shown, " " * pad + "^"


def warm_while_editing(settings: Settings) -> None:
    """An editor is opening: compile the rules program meanwhile (when none is loaded),
    so applying the rule does not wait for the compile (5-8 s). Best effort, off the loop."""
    rules_change.warm(settings)


class RuleEditScreen(ModalScreen["Rule | None"]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        # priority: the input would otherwise take the key first (it has none for it)
        Binding("ctrl+t", "deny_or_count", "deny with a TTL / count", priority=True),
    ]

    DEFAULT_CSS = """
    RuleEditScreen { align: center middle; }
    RuleEditScreen > Vertical {
        width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    RuleEditScreen .note { color: $text-muted; }
    RuleEditScreen #rule-status { height: auto; }
    RuleEditScreen #rule-status.-error { color: $error; }
    RuleEditScreen #rule-preview-box { height: auto; max-height: 12; }
    """

    def __init__(self, title: str, preview: Callable[[Rule], str], initial: str = "", note: str = "") -> None:
        super().__init__()
        self._title = title
        self._preview = preview
        self._initial = initial
        self._note = note  # where the prefilled rule came from (a flow, a group)
        self.rule: Rule | None = None
        self.error: RuleError | None = None

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = plain(self._title, max_len=60)
        with box:
            if self._note:
                yield Static(Content(clean(self._note, 300)), id="rule-origin", markup=False)
            yield Static(Content.assemble(("rule: ", "bold"), GRAMMAR), classes="note", markup=False)
            yield TextInput(value=self._initial, placeholder=EXAMPLE, max_length=MAX_LINE, id="rule-input")
            yield Static(Content(""), id="rule-status", markup=False)
            with VerticalScroll(id="rule-preview-box"):
                yield Static(Content(""), id="rule-preview", markup=False)
            yield Static(
                "enter: review and confirm (nothing changes before that)   esc: cancel\n"
                f"ctrl+t: make it deny for {format_duration(DENY_TTL)} (again: count)",
                classes="note",
                markup=False,
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.validate(self._initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate(event.value)

    def validate(self, text: str) -> Rule | None:
        """Parse `text`; show the error at its column, or the rule's meaning and preview."""
        status = self.query_one("#rule-status", Static)
        preview = self.query_one("#rule-preview", Static)
        self.rule, self.error = None, None
        try:
            rule = parse_rule(text)
        except RuleError as exc:
            self.error = exc
            shown, caret = caret_lines(text, exc.col)
            status.update(
                Content.assemble(
                    ("✖ ", "bold"),
                    f"column {exc.col}: {clean(exc.term, 60)!r}: {clean(exc.reason, 300)}",
                    "\n",
                    shown,
                    "\n",
                    (caret, "bold"),
                )
            )
            status.set_class(True, "-error")
            preview.update("")
            return None
        status.set_class(False, "-error")
        if rule is None:
            status.update(Content(f"type a rule, {EXAMPLE}"))
            preview.update("")
            return None
        self.rule = rule
        status.update(Content.assemble(("✔ valid", "bold $success")))
        try:
            text_preview = self._preview(rule)
        except Exception as exc:
            text_preview = f"(no preview: {type(exc).__name__}: {exc})"
        preview.update(Content("\n".join(clean(line, 500) for line in text_preview.splitlines())))
        return rule

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        rule = self.validate(event.value)
        if rule is not None:
            self.dismiss(rule)
        elif self.error is None:
            self.query_one("#rule-status", Static).update(Content(f"no rule yet: {EXAMPLE}"))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_deny_or_count(self) -> None:
        field = self.query_one(Input)
        rule = self.validate(field.value)
        if rule is None:
            return  # the status line already says what is wrong
        field.value = format_rule(deny_or_count(rule))  # validated again by on_input_changed
        field.cursor_position = len(field.value)
