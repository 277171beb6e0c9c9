"""ebpftop's Textual themes, named by meaning.

Panes never name colours: the stylesheet (`app.tcss`) uses theme variables ($error,
$warning, $success, $primary...) so a theme changes every pane at once. The kiosk
theme is a high-visibility dark theme for a wall display read from across a room.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("app.tcss")

DEFAULT_THEME = "ebpftop-dark"

THEMES: tuple[Theme, ...] = (
    Theme(
        name="ebpftop-dark",
        primary="#3d8fd6",
        secondary="#2a5a85",
        accent="#e0a030",
        warning="#e0a030",
        error="#e05561",
        success="#4fbf72",
        foreground="#d8dee4",
        background="#12161b",
        surface="#1a2027",
        panel="#222a33",
        dark=True,
    ),
    Theme(
        name="ebpftop-light",
        primary="#1f5f99",
        secondary="#3d8fd6",
        accent="#9a5b00",
        warning="#9a5b00",
        error="#b3202c",
        success="#1d7a3c",
        foreground="#1b1f24",
        background="#f4f5f7",
        surface="#e8eaed",
        panel="#dcdfe3",
        dark=False,
    ),
    # Pure colours and maximum contrast: readable with poor eyesight, bad projectors
    # and 16-colour terminals.
    Theme(
        name="ebpftop-high-contrast",
        primary="#ffffff",
        secondary="#ffff00",
        accent="#ffff00",
        warning="#ffff00",
        error="#ff4040",
        success="#00ff00",
        foreground="#ffffff",
        background="#000000",
        surface="#000000",
        panel="#000000",
        boost="#ffffff",
        dark=True,
        luminosity_spread=0.0,
        text_alpha=1.0,
    ),
    Theme(
        name="ebpftop-kiosk",
        primary="#5fafff",
        secondary="#303a46",
        accent="#ffd75f",
        warning="#ffd75f",
        error="#ff5f5f",
        success="#5fd787",
        foreground="#f0f0f0",
        background="#0a0c0f",
        surface="#10141a",
        panel="#161c24",
        dark=True,
        text_alpha=1.0,
    ),
)

THEME_NAMES: tuple[str, ...] = tuple(t.name for t in THEMES)


def register_themes(app: App[Any]) -> None:
    """Register every ebpftop theme with a Textual app (before setting `app.theme`)."""
    for theme in THEMES:
        app.register_theme(theme)


def next_theme(current: str) -> str:
    """The theme after `current` in ebpftop's cycle (the first one for any other)."""
    if current not in THEME_NAMES:
        return THEME_NAMES[0]
    return THEME_NAMES[(THEME_NAMES.index(current) + 1) % len(THEME_NAMES)]
