"""The one way untrusted strings reach the screen: never parsed as markup, never writing
control sequences (the cleaning rule itself is `core/untrusted.py`).

Sinks that parse a `str` as markup (border titles, Static, tooltips...)
get objects instead: `safe` (Rich `Text`) or `plain` / `joined` (Textual `Content`);
cleaning alone cannot help, as `[` is printable. Toasts take text made by `lines`;
tables (`panes/table.py`) draw cleaned text as plain segments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text

from ebpftop.core.untrusted import clean

if TYPE_CHECKING:
    from textual.content import Content

__all__ = ["clean", "joined", "lines", "plain", "safe"]


def safe(value: object, style: str = "", max_len: int | None = None) -> Text:
    """A Rich Text of the cleaned value: markup in it is shown, never interpreted."""
    return Text(clean(value, max_len), style=style, no_wrap=False)


def plain(value: object, style: str = "", max_len: int | None = None) -> Content:
    """A Textual Content of the cleaned value (`style` may use theme `$variables`):
    markup in it is shown, never interpreted."""
    # Imported here: the CLI commands use `clean` from this module without Textual.
    from textual.content import Content

    text = clean(value, max_len)
    return Content.styled(text, style) if style else Content(text)


def joined(values: Iterable[object], sep: str = "  ", max_len: int | None = None) -> Content:
    """The cleaned values on one line, each cut to `max_len`, separated by `sep`."""
    from textual.content import Content

    return Content(sep).join(plain(v, max_len=max_len) for v in values)


def lines(value: object, max_len: int | None = None) -> str:
    """Multi-line literal text: every line cleaned, the newlines between them kept.
    For a sink that takes only a `str` and is told not to parse it (a toast)."""
    return "\n".join(clean(line, max_len) for line in str(value).split("\n"))
