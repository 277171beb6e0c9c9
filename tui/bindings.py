"""Which key runs which action. Declarative: descriptions come from `key_actions.py`."""

from __future__ import annotations

from textual.binding import Binding

from .key_actions import spec

# (keys, action, shown in the footer). Keys are Textual key names; a comma gives
# alternatives for the same action.
KEYMAP: tuple[tuple[str, str, bool], ...] = (
    ("question_mark", "help", True),
    ("space", "toggle_pause", True),
    ("1", "focus_pane(1)", True),
    ("2", "focus_pane(2)", True),
    ("3", "focus_pane(3)", True),
    ("4", "focus_pane(4)", True),
    ("tab", "focus_next", False),
    ("shift+tab", "focus_previous", False),
    ("T", "cycle_theme", False),  # in help and the palette: 80 columns keep R and q
    ("dollar_sign", "own_cost", False),  # in help and the palette: 80 columns keep R and q
    ("ctrl+p", "command_palette", False),
    ("left_square_bracket", "replay_step(-1)", True),
    ("right_square_bracket", "replay_step(1)", True),
    ("less_than_sign", "replay_slower", True),
    ("greater_than_sign", "replay_faster", True),
    ("m", "marker", True),
    ("R", "rollback", True),
    ("U", "undo_rollback", False),  # in help: rare, and 80 columns keep R and q
    ("ctrl+z", "suspend_process", False),
    ("q", "quit", True),
)

_DISPLAY = {
    "question_mark": "?",
    "dollar_sign": "$",
    "space": "space",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "less_than_sign": "<",
    "greater_than_sign": ">",
    "slash": "/",
    "shift+tab": "shift+tab",
}

# Related keys share one footer entry ("1234 Panes"), so 80 columns hold them all.
_GROUPS = {
    "focus_pane": Binding.Group("Panes", compact=True),
    "replay_step": Binding.Group("Replay", compact=True),
    "replay_slower": Binding.Group("Replay", compact=True),
    "replay_faster": Binding.Group("Replay", compact=True),
}


def key_display(key: str) -> str:
    return _DISPLAY.get(key, key)


def app_bindings() -> list[Binding]:
    out = []
    for key, action, show in KEYMAP:
        s = spec(action)
        assert s is not None, f"bindings.py: {action!r} has no entry in key_actions.py"
        out.append(
            Binding(
                key,
                action,
                s.title,
                show=show,
                key_display=_DISPLAY.get(key),
                tooltip=s.help,
                group=_GROUPS.get(action.split("(")[0]),
            )
        )
    return out
