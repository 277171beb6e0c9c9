"""A one-line text field that cannot hold a control character.

Textual's Input draws its value as it is: a pasted ESC or bidi override, or an initial
value from outside (a rule's text in the editor), would reach the terminal raw. What
gets in (typed, pasted, set) is cleaned by the one rule, `tui.text.clean`, so it shows
as a visible escape (`\\x1b`) as it does everywhere else.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from ..text import clean


class TextInput(Input):
    def __init__(self, value: str | None = None, **kwargs: Any) -> None:
        super().__init__(clean(value) if value else value, **kwargs)

    def validate_value(self, value: str) -> str:
        return clean(value)

    def replace(self, text: str, start: int, end: int) -> None:
        # Cleaned before Input places the cursor after it and checks max_length.
        super().replace(clean(text), start, end)
