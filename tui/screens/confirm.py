"""The confirmation screen every action passes through before the gate runs it.

It says exactly what will happen (the action's own description), on what, and whether
it is dangerous. When the action sets `confirm_text`, the operator must type it; Enter
(or `y` when there is nothing to type) confirms only then. Escape (or `n`) cancels.
Everything shown comes from the action, which may quote outside data (a process name,
a rule), so it is all cleaned.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..text import clean, plain
from .text_input import TextInput


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("enter,y", "confirm", "Confirm"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ConfirmScreen.-dangerous > Vertical { border: thick $error; }
    ConfirmScreen #confirm-error { color: $error; }
    ConfirmScreen .note { color: $text-muted; }
    ConfirmScreen #confirm-description-box { height: auto; max-height: 60vh; }
    """

    def __init__(self, action: Any) -> None:
        super().__init__(classes="-dangerous" if getattr(action, "dangerous", False) else "")
        self.action = action
        self.required: str | None = getattr(action, "confirm_text", None) or None

    def compose(self) -> ComposeResult:
        a = self.action
        box = Vertical()
        box.border_title = plain(a.title, max_len=60)
        box.border_subtitle = plain("DANGEROUS" if getattr(a, "dangerous", False) else "")
        with box:
            # Line by line: a multi-line description (a rollback's plan and evidence) keeps
            # its lines; it scrolls rather than pushing the input off a small screen.
            lines = "\n".join(clean(line, 500) for line in str(a.description).splitlines()[:200])
            with VerticalScroll(id="confirm-description-box"):
                yield Static(Content(lines), id="confirm-description", markup=False)
            if getattr(a, "target", ""):
                yield Static(
                    Content.assemble(("target: ", "$text-muted"), (clean(a.target, 200), "bold")),
                    id="confirm-target",
                    markup=False,
                )
            if self.required is not None:
                yield Static(
                    Content.assemble("Type ", (clean(self.required, 100), "bold"), " to confirm:"),
                    markup=False,
                )
                yield TextInput(id="confirm-input")
                keys = "enter: confirm (when typed exactly)   esc: cancel"
            else:
                keys = "enter / y: confirm   esc / n: cancel"
            yield Static("", id="confirm-error", markup=False)
            yield Static(keys, classes="note", markup=False)

    def on_mount(self) -> None:
        if self.required is not None:
            self.query_one(Input).focus()

    def valid(self) -> bool:
        if self.required is None:
            return True
        return self.query_one(Input).value == self.required

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def action_confirm(self) -> None:
        if self.valid():
            self.dismiss(True)
        else:
            self.query_one("#confirm-error", Static).update(
                Content(f"Type {clean(self.required, 100)} exactly to confirm, or press esc to cancel.")
            )

    def action_cancel(self) -> None:
        self.dismiss(False)
