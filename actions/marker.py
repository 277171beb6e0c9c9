"""Built-in actions. The incident marker is the harmless one that exercises the gate.

Each builder validates its input first (so bad input never reaches the audit log) and
returns the `Action` to confirm plus the `perform` coroutine the gate runs.
"""

from __future__ import annotations

import itertools
import time
import unicodedata
from collections.abc import Awaitable, Callable

from ebpftop.core.audit import Actor
from ebpftop.core.bus import Bus
from ebpftop.core.gate import Action
from ebpftop.core.model import Health, Marker, Snapshot

MARKER_MAX_LEN = 200
MARKER_SOURCE = "marker"

# Markers from every gate in this process share one sequence, like any other source.
_marker_seq = itertools.count(1)


class ActionInputError(ValueError):
    """The input for an action is unusable; the message says what and where."""


def _bad_char(ch: str) -> bool:
    # Cc: C0/C1 controls and DEL; Cf: invisible format chars incl. bidi overrides;
    # Zl/Zp: line/paragraph separators. A marker is one visible line.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def validate_marker_text(text: object) -> str:
    if not isinstance(text, str):
        raise ActionInputError(f"marker text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ActionInputError("marker text is empty")
    if len(text) > MARKER_MAX_LEN:
        raise ActionInputError(f"marker text is {len(text)} characters long; the limit is {MARKER_MAX_LEN}")
    for pos, ch in enumerate(text, 1):
        if _bad_char(ch):
            code = f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
            raise ActionInputError(f"marker text has a control character ({code}) at position {pos}")
    return text


def marker_action(bus: Bus, text: str, actor: Actor) -> tuple[Action, Callable[[], Awaitable[str]]]:
    """Drop an incident marker on the timeline. Raises ActionInputError on bad text."""
    text = validate_marker_text(text)
    action = Action(
        kind="marker.add",
        title="Add incident marker",
        description=(
            f"Publish the incident marker {text!r}, by {actor.user!r}, to the dashboard timeline "
            "(and to the recording, if one is running). Nothing outside ebpftop changes."
        ),
        params={"text": text},
    )

    async def perform() -> str:
        bus.publish(
            Snapshot(MARKER_SOURCE, next(_marker_seq), time.time(), Health(), Marker(text, actor.user))
        )
        return "marker added"

    return action, perform
