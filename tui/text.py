"""The one way untrusted strings reach the screen.

Process names, labels, hostnames, URLs and error messages come from outside. They are
never parsed as markup (a Rich `Text` is built, never `Text.from_markup`) and never
allowed to write terminal control sequences: the cleaning rule lives in
`collectors/untrusted.py` so collectors composing multi-line text use the same one.
"""

from __future__ import annotations

from rich.text import Text

from ebpftop.collectors.untrusted import clean

__all__ = ["clean", "safe"]


def safe(value: object, style: str = "", max_len: int | None = None) -> Text:
    """A Rich Text of the cleaned value: markup in it is shown, never interpreted."""
    return Text(clean(value, max_len), style=style, no_wrap=False)
