"""`/` in the Flows pane: type a filter; a bad one is shown with a caret under the
offending term and the dialog stays open, so the operator fixes it in place. Escape
leaves the current filter as it was; an empty filter shows every flow.

The text is checked here with the collectors' parser (`flows.filter.parse`), so the
pane only ever receives a filter that parses.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ebpftop.collectors.flows.filter import FilterError, parse

from ...screens.text_input import TextInput
from ...text import clean

HELP = (
    "port:443 sport:53 dport:8000-8100  proto:udp  10.0.0.0/8 src:… dst:…\n"
    "proc:nginx pid:1234 svc:checkout  iface:eth0 dir:ingress\n"
    "either end: pod:web ns:shop workload:api unit:nginx container:3f2a netns:x\n"
    "same field: any matches; different fields: all must; !term negates"
)
MAX_LEN = 500


def caret_lines(text: str, position: int, length: int, width: int) -> tuple[str, str]:
    """The (cleaned) filter text and a line of carets under the term at `position`,
    windowed to `width` so the term is on screen however long the text is."""
    before = clean(text[:position])
    term = clean(text[position : position + length]) or " "
    after = clean(text[position + length :])
    line = before + term + after
    start = len(before)
    # Keep the term visible: scroll the window so it starts a third of the way in.
    offset = 0
    if start + len(term) > width:
        offset = max(0, start - width // 3)
    shown = line[offset : offset + width]
    if offset:
        shown = "…" + shown[1:]
    carets = " " * (start - offset) + "^" * max(1, min(len(term), width - (start - offset)))
    return shown, carets


class FlowFilterScreen(ModalScreen[str | None]):
    """Dismisses with a filter text that parses (maybe empty), or None on Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    FlowFilterScreen { align: center middle; }
    FlowFilterScreen > Vertical {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    FlowFilterScreen .note { color: $text-muted; }
    FlowFilterScreen #filter-error { color: $error; display: none; }
    FlowFilterScreen.-error #filter-error { display: block; }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current
        self.error: FilterError | None = None

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "Filter flows"
        with box:
            yield TextInput(
                value=self.current,
                placeholder="e.g. port:443 proto:tcp 10.0.0.0/8",
                max_length=MAX_LEN,
                id="filter-input",
            )
            yield Static(Content(""), id="filter-error", markup=False)
            yield Static(HELP, classes="note", markup=False)
            yield Static(
                "enter: apply (empty: all flows)   esc: keep the current filter", classes="note", markup=False
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        try:
            parse(text)
        except FilterError as exc:
            self.show_error(text, exc)
            return
        self.dismiss(text.strip())

    def on_input_changed(self, event: Input.Changed) -> None:
        # The caret points into the text as it was; once edited, it would point wrong.
        if self.error is not None:
            self.error = None
            self.set_class(False, "-error")

    def show_error(self, text: str, exc: FilterError) -> None:
        self.error = exc
        width = max(20, self.query_one("#filter-error", Static).content_size.width or 72)
        shown, carets = caret_lines(text, exc.position, len(exc.term), width)
        self.query_one("#filter-error", Static).update(
            Content.assemble(
                (shown, "bold"),
                "\n",
                (carets, "bold $error"),
                "\n",
                (f"column {exc.position + 1}: ", "bold $error"),
                clean(exc.message, 300),
                ("\nthe current filter stays until this one parses", "$text-muted"),
            )
        )
        self.set_class(True, "-error")

    def action_cancel(self) -> None:
        self.dismiss(None)
