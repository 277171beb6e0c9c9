"""A table that builds and draws only the rows on screen (`LineTable`).

Textual's DataTable holds every row as widgets' data and repaints itself whole when a
cell changes; a pane with hundreds of flows handed it hundreds of rows a second and the
terminal got the whole table again. Here the pane hands over how many rows its order
has and a function that builds row `i`: the table asks only for the rows in its window,
compares each screen line with what it drew last, and repaints just the lines that
differ. Cost follows the window's height, not the number of rows.

The cursor is either unattended (nobody moved it: it sits on the top row and the
window shows the top of the order) or placed by the operator, in which case the pane
makes it follow its row. Cell text is untrusted: it is cleaned and drawn as plain
segments, never parsed as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget

from ..text import clean

Cell = tuple[str, str]  # (text, style); the style may name theme `$variables`


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # characters of content; one more is drawn before it as the gap
    right: bool = False


@dataclass(frozen=True)
class Row:
    ident: tuple[Any, ...]  # what the row shows (a flow key, a group), for following it
    cells: tuple[Cell, ...]


RowAt = Callable[[int], Row]
SCROLL_STEP = 3
_THUMB = "▐"


class LineTable(Widget):
    """`show(columns, count, row_at, cursor)` draws rows `row_at(top..top+height)`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "line-table--header",
        "line-table--cursor",
        "line-table--stripe",
        "line-table--thumb",
    }

    DEFAULT_CSS = """
    LineTable { height: 1fr; }
    LineTable > .line-table--header { text-style: bold; background: $panel; color: $foreground; }
    LineTable > .line-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    SourcePane:focus-within LineTable > .line-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    LineTable > .line-table--stripe { background: $surface-lighten-1 30%; }
    LineTable > .line-table--thumb { color: $scrollbar; }
    """

    class Selected(Message):
        """The operator chose the cursor's row (a click on it)."""

        def __init__(self, table: LineTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

    class Moved(Message):
        """The operator moved the cursor (click, wheel): the pane follows the new row."""

        def __init__(self, table: LineTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

    class Resized(Message):
        """The window now holds another number of rows: a pane that fits its columns to
        the rows shown draws again."""

        def __init__(self, table: LineTable) -> None:
            super().__init__()
            self.table = table

    def __init__(self, *, stripes: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stripes = stripes
        self.columns: list[Column] = []
        self.count = 0
        self.cursor = 0
        self.top = 0
        self._row_at: RowAt = _no_rows
        # What each screen line shows (y = 0 is the header), compared on every show().
        self._lines: list[tuple[Any, ...]] = []
        self._strips: dict[int, Strip] = {}
        self._styles: dict[tuple[tuple[str, ...], str], Style] = {}
        self._size = Size(0, 0)
        # Counters: how many rows were built and lines repainted (tests read them).
        self.rows_built = 0
        self.lines_repainted = 0

    # --- what the pane calls --------------------------------------------------------

    @property
    def window(self) -> int:
        """Rows that fit under the header."""
        return max(0, self.size.height - 1)

    def place(self, count: int, cursor: int) -> None:
        """Set the rows' number and the cursor, and so the window, before `show` (a
        pane may need the window's rows to choose its columns)."""
        self.count, self.cursor = count, cursor
        self._place()

    def show(self, columns: Sequence[Column], count: int, row_at: RowAt, cursor: int | None = None) -> None:
        self.columns = list(columns)
        self.count = count
        self._row_at = row_at
        if cursor is not None:
            self.cursor = cursor
        self._place()
        self._draw()

    def shown(self) -> list[Row]:
        """The rows on screen now, as drawn (builds nothing)."""
        return [Row((), line[1]) for line in self._lines if line[0] == "row"]

    def move_cursor(self, index: int) -> None:
        self.cursor = index
        self._place()
        self._draw()

    def visible_rows(self) -> range:
        return range(self.top, min(self.count, self.top + self.window))

    def row(self, index: int) -> Row:
        self.rows_built += 1
        return self._row_at(index)

    # --- placing and comparing -------------------------------------------------------

    def _place(self) -> None:
        self.cursor = max(0, min(self.cursor, self.count - 1)) if self.count else 0
        window = self.window
        if self.cursor < self.top:
            self.top = self.cursor
        elif window and self.cursor >= self.top + window:
            self.top = self.cursor - window + 1
        self.top = max(0, min(self.top, self.count - window))

    def _draw(self) -> None:
        width, window = self.size.width, self.window
        if width <= 0:
            return  # not laid out yet: on_resize draws
        thumb = self._thumb(window)
        lines: list[tuple[Any, ...]] = [("header", tuple(self.columns))]
        for y in range(window):
            i = self.top + y
            if i >= self.count:
                lines.append(("blank", y in thumb))
                continue
            row = self.row(i)
            lines.append(("row", row.cells, i == self.cursor, self.stripes and i % 2 == 1, y in thumb))
        if self.size != self._size or len(lines) != len(self._lines):
            self._size = self.size
            self._lines, self._strips = lines, {}
            self.lines_repainted += len(lines)
            self.refresh()
            return
        for y, (old, new) in enumerate(zip(self._lines, lines, strict=True)):
            if old != new:
                self._strips.pop(y, None)
                self.lines_repainted += 1
                self.refresh(Region(0, y, width, 1))
        self._lines = lines

    def _thumb(self, window: int) -> range:
        if self.count <= window or window <= 0:
            return range(0)
        size = max(1, window * window // self.count)
        start = min(window - size, self.top * window // self.count)
        return range(start, start + size)

    def on_resize(self, _event: events.Resize) -> None:
        window = len(self._lines) - 1
        self._place()
        self._draw()
        if window != self.window:
            self.post_message(self.Resized(self))

    def refresh_styles(self) -> None:
        """The theme changed: resolve every colour again and repaint."""
        self._styles.clear()
        self._lines, self._strips = [], {}
        self._draw()

    def notify_style_update(self) -> None:
        # The pane's focus changes the cursor's colours, a theme all of them.
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()
        self.refresh()

    # --- drawing one line ------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = self._line_strip(y)
        return strip

    def _line_strip(self, y: int) -> Strip:
        width = self.size.width
        if y >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        line = self._lines[y]
        if line[0] == "header":
            cells = [(c.label, "") for c in self.columns]
            return self._strip(cells, ("line-table--header",), width, thumb=False)
        if line[0] == "blank":
            return self._strip([], (), width, thumb=line[1])
        _kind, cells, cursor, stripe, thumb = line
        parts: tuple[str, ...] = ("line-table--stripe",) if stripe else ()
        if cursor:
            parts += ("line-table--cursor",)
        return self._strip(cells, parts, width, thumb=thumb)

    def _strip(self, cells: Sequence[Cell], parts: tuple[str, ...], width: int, *, thumb: bool) -> Strip:
        room = width - 1  # the last column is the scrollbar's
        segments: list[Segment] = []
        used = 0
        for column, (text, cell_style) in zip(self.columns, cells, strict=False):
            size = min(column.width + 1, room - used)
            if size <= 0:
                break
            body = _right(clean(text), size - 1) if column.right else set_cell_size(clean(text), size - 1)
            segments.append(Segment(" " + body, self._style(parts, cell_style)))
            used += size
        if used < room:
            segments.append(Segment(" " * (room - used), self._style(parts, "")))
        if room >= 0:
            segments.append(Segment(_THUMB if thumb else " ", self._style(("line-table--thumb",), "")))
        return Strip(segments, width)

    def _style(self, parts: tuple[str, ...], cell: str) -> Style:
        """The line's style (the widget's, under its component classes) with the cell's
        on top; the cell's may name theme `$variables` and `auto` colours."""
        key = (parts, cell)
        style = self._styles.get(key)
        if style is None:
            line = self.get_visual_style(*parts)
            style = self._styles[key] = (line + VisualStyle.parse(cell) if cell else line).rich_style
        return style

    # --- the mouse -------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        index = self.top + event.y - 1
        if event.y < 1 or index >= self.count:
            return
        event.stop()
        if index == self.cursor:
            self.post_message(self.Selected(self, index))
            return
        self.move_cursor(index)
        self.post_message(self.Moved(self, index))

    def _scroll(self, delta: int) -> None:
        if self.count:
            self.move_cursor(self.cursor + delta)
            self.post_message(self.Moved(self, self.cursor))

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._scroll(SCROLL_STEP)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._scroll(-SCROLL_STEP)


def _right(text: str, size: int) -> str:
    length = cell_len(text)
    if length >= size:
        return set_cell_size(text, size)
    return " " * (size - length) + text


def _no_rows(index: int) -> Row:
    raise IndexError(index)
