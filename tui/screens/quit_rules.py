"""At quit: allow/deny rules keep enforcing after ebpftop exits. Say which, ask.

k (or Enter) keeps them and quits; r removes them (through the gate: confirmed and
audited) and then quits; Escape stays in the dashboard.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ..text import clean, plain


class QuitRulesScreen(ModalScreen[str | None]):
    """Dismisses with "keep", "remove", or None (stay)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k,enter", "choose('keep')", "Keep and quit"),
        Binding("r", "choose('remove')", "Remove and quit"),
        Binding("escape", "choose(None)", "Stay"),
    ]

    DEFAULT_CSS = """
    QuitRulesScreen { align: center middle; }
    QuitRulesScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    QuitRulesScreen #quit-rules-lines { height: auto; max-height: 60vh; }
    QuitRulesScreen .note { color: $text-muted; }
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def compose(self) -> ComposeResult:
        box = Vertical()
        n = len(self.lines)
        box.border_title = plain(f"{n} rule{'s' if n != 1 else ''} stay enforced after exit")
        with box:
            with VerticalScroll(id="quit-rules-lines"):
                yield Static(Content("\n".join(clean(line, 300) for line in self.lines)), markup=False)
            yield Static(
                "k / Enter  keep them enforcing and quit\n"
                "r          remove them (confirmed, audited) and quit\n"
                "Escape     stay in ebpftop",
                classes="note",
                markup=False,
            )

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
