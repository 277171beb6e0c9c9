"""Enter on a Profiles row: the processes behind it with their whole identity (every
tag: service, version, netns, unit, container, pod...), its top functions (self and
total) and a flame view that fits the terminal, in a dialog that scrolls (80x24 loses
nothing). Escape closes.

The dialog holds a copy of the row's stacks: new snapshots do not move it under the
operator's eyes.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.profiles.model import StackSample

from ...screens.detail import DetailScreen
from ...text import plain
from .view import flame_lines, top_lines

FLAME_HEIGHT = 16  # rows of the flame view at most (deeper frames are cut)


class ProfileDetailScreen(DetailScreen):
    DEFAULT_CSS = """
    ProfileDetailScreen { align: center middle; }
    ProfileDetailScreen > VerticalScroll {
        width: 100%; height: 100%; border: round $primary; background: $surface; padding: 0 1;
    }
    ProfileDetailScreen .heading { text-style: bold; margin-top: 1; }
    ProfileDetailScreen #detail-title { color: $accent; }
    """

    def __init__(
        self, title: str, stacks: list[StackSample], note: str = "", identity: Content | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.stacks = list(stacks)
        self.note = note
        self.identity = identity  # made of cleaned tags (view.identity_lines)

    def compose(self) -> ComposeResult:
        box = VerticalScroll(can_focus=False)
        box.border_title = "Profile detail"
        box.border_subtitle = "esc closes"
        with box:
            yield Static(plain(self.title_text), id="detail-title", markup=False)
            if self.note:
                yield Static(plain(self.note, "$text-muted"), id="detail-note", markup=False)
            if self.identity is not None:
                yield Static("processes", classes="heading", markup=False)
                yield Static(self.identity, id="detail-identity", markup=False)
            yield Static(Content(""), id="detail-top", markup=False)
            yield Static(
                "flame (root at the top; a frame's width is its share of the samples)",
                classes="heading",
                markup=False,
            )
            yield Static(Content(""), id="detail-flame", markup=False)

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = max(20, self.size.width - 4)  # border and padding
        # A short terminal lists fewer functions so the flame view starts on screen.
        n = 5 if self.size.height < 40 else 8
        self.query_one("#detail-top", Static).update(top_lines(self.stacks, width, n))
        self.query_one("#detail-flame", Static).update(flame_lines(self.stacks, width, FLAME_HEIGHT))

    def text(self) -> str:
        """What the dialog shows, as plain text (for tests and screen readers)."""
        return "\n".join(str(w.render()) for w in self.query(Static))
