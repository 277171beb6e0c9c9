"""`?`: every key the app has, generated from its bindings so it never drifts."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ..bindings import key_display
from ..key_actions import spec

# Textual's own actions that have no entry in key_actions.py.
_TEXTUAL_HELP = {"help_quit": "say how to quit (q or ctrl+q)", "quit": "quit ebpftop"}


def all_bindings(app: App[Any]) -> list[Binding]:
    """Every Binding declared on the app's classes, most specific class first."""
    seen: set[str] = set()
    out: list[Binding] = []
    for cls in type(app).__mro__:
        for b in Binding.make_bindings(cls.__dict__.get("BINDINGS", ())):
            if b.key in seen:
                continue
            seen.add(b.key)
            out.append(b)
    return out


def help_rows(app: App[Any]) -> list[tuple[str, str, str]]:
    """(keys, what it does, note) for every binding; a note says when it is disabled."""
    rows: list[tuple[str, str, str]] = []
    absent: frozenset[str] = getattr(app, "NOT_OFFERED", frozenset())  # actions a view has no use for
    for b in all_bindings(app):
        if b.action.split("(")[0] in absent:
            continue
        s = spec(b.action)
        text = s.help if s else _TEXTUAL_HELP.get(b.action) or b.description or b.action.replace("_", " ")
        note = ""
        if s is not None and s.replay and getattr(app, "replay", None) is None:
            note = "replay only"
        elif s is not None and s.acts and getattr(app, "read_only", False):
            note = "disabled: read-only"
        keys = ", ".join(key_display(k.strip()) for k in b.key.split(","))
        rows.append((keys, text, note))
    rows.append(("escape", "close a dialog (this one too)", ""))
    return rows + pane_rows(app)


def pane_rows(app: App[Any]) -> list[tuple[str, str, str]]:
    """Each pane's own keys (they act only while that pane has focus)."""
    from ..panes.base import SourcePane

    rows: list[tuple[str, str, str]] = []
    base = app.screen_stack[0] if app.screen_stack else app.screen
    for pane in base.query(SourcePane):
        own = [
            b
            for b in Binding.make_bindings(type(pane).__dict__.get("BINDINGS", ()))
            if b.tooltip or b.description
        ]
        if not own:
            continue
        rows.append((f"{pane.number} {pane.title}", "pane keys, when it has focus", ""))
        for b in own:
            s = spec(b.action)
            note = (
                "disabled: read-only" if s is not None and s.acts and getattr(app, "read_only", False) else ""
            )
            keys = ", ".join(key_display(k.strip()) for k in b.key.split(","))
            rows.append((f"  {keys}", b.tooltip or b.description, note))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", key_display="esc"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 84; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen #help-keys {
        layout: grid; grid-size: 2; grid-columns: auto 1fr; grid-gutter: 0 2; height: auto;
    }
    HelpScreen .key { color: $accent; text-style: bold; width: auto; }
    HelpScreen .what { width: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, str]] = []

    def compose(self) -> ComposeResult:
        self.rows = help_rows(self.app)
        scroll = VerticalScroll()
        scroll.border_title = "Keys"
        scroll.border_subtitle = "esc closes"
        with scroll, Container(id="help-keys"):
            for keys, text, note in self.rows:
                yield Static(keys, classes="key", markup=False)
                what = Content.assemble(text, (f"  ({note})", "$text-muted") if note else "")
                yield Static(what, classes="what", markup=False)

    def listing(self) -> str:
        """The keys and what they do, one per line (what the screen shows)."""
        return "\n".join(f"{k}  {t}" + (f"  ({n})" if n else "") for k, t, n in self.rows)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
