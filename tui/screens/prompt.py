"""Ask the operator for one line of text (e.g. an incident marker)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..text import plain
from .text_input import TextInput


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the text on Enter, with None on Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical {
        width: 70; max-width: 100%; height: auto;
        border: round $primary; background: $surface; padding: 0 1;
    }
    PromptScreen .note { color: $text-muted; }
    """

    def __init__(self, title: str, label: str, placeholder: str = "", max_length: int = 0) -> None:
        super().__init__()
        self._title = title
        self._label = label
        self._placeholder = placeholder
        self._max_length = max_length

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = plain(self._title, max_len=60)
        with box:
            yield Static(self._label, markup=False)
            yield TextInput(placeholder=self._placeholder, max_length=self._max_length, id="prompt-input")
            yield Static("enter: continue   esc: cancel", classes="note", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
