"""Repaint a text widget only as much as its new content needs.

Most updates a pane receives change nothing or change a number in place ("5s" ->
"6s"). Static.update always asks for a repaint and a layout pass, and a layout pass
re-arranges the whole screen: on an idle dashboard those passes were most of its CPU.
"""

from __future__ import annotations

from textual.content import Content
from textual.dom import DOMNode
from textual.visual import VisualType
from textual.widgets import Static

_KEY = "_ebpftop_shown"


def set_content(static: Static, content: VisualType) -> bool:
    """Show `content` in `static`; True when anything had to be redrawn. Anything
    but text (a Rich renderable, say) is shown as Static.update shows it."""
    if isinstance(content, str):
        content = Content(content)
    if not isinstance(content, Content):
        setattr(static, _KEY, None)
        static.update(content)
        return True
    key = (content.plain, tuple(content.spans))  # Content == compares the text only
    if getattr(static, _KEY, None) == key:
        return False
    setattr(static, _KEY, key)
    static.update(content, layout=not _same_height(static, content))
    return True


def _same_height(static: Static, content: Content) -> bool:
    width = static.content_region.width
    if width <= 0 or not static.display:
        return False
    # Textual's own Widget passes its styles here the same way (widget.py); the
    # annotation asks for the narrower RulesMap
    height = content.get_height(static.styles, width)  # type: ignore[arg-type]
    cap = static.styles.max_height
    if cap is not None and cap.is_cells:
        height = min(height, int(cap.value))
    return static.size.height == height


def forget(root: DOMNode) -> None:
    """Make the next set_content under `root` redraw (colours resolved from a theme
    that has since changed, for one)."""
    for static in root.query(Static):
        setattr(static, _KEY, None)
