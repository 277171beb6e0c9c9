"""Hostile text from outside (hostnames, process names, health messages, markers,
actions) is shown literally and never reaches the terminal as control sequences."""

from __future__ import annotations

from app_support import (
    assert_nothing_raw_reaches_the_terminal,
    host_data,
    make_app,
    rules_data,
    screen_text,
    snap,
    terminal_bytes,
)

from ebpftop.core.gate import Action
from ebpftop.core.model import Health, HealthState, Marker
from ebpftop.tui.screens.confirm import ConfirmScreen

MARKUP = "[bold red]x[/]"
HOSTILE = MARKUP + "\x1b]0;pwned\x07" + "\x9b2J" + "\u202eevil" + "\x1b[2J" + "\x00\x7f"


async def test_hostile_strings_in_every_pane_and_the_header(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60), notifications=True) as pilot:
        bus = app.runtime.bus
        bus.publish(snap("host", host_data(hostname=HOSTILE, kernel=HOSTILE)))
        bus.publish(snap("flows", None, Health(HealthState.DOWN, HOSTILE, HOSTILE, None, 1)))
        bus.publish(snap("rules", rules_data(1, text=HOSTILE, author=HOSTILE, comment=HOSTILE)))
        bus.publish(snap("canary", None, Health(HealthState.DEGRADED, HOSTILE, "", None, 1)))
        bus.publish(snap("profiles", {"top": [HOSTILE], "service": HOSTILE}))
        bus.publish(snap("marker", Marker(HOSTILE, HOSTILE)))
        await pilot.pause()
        text = screen_text(app)
        # Markup is shown as typed, not interpreted...
        assert text.count(MARKUP) >= 6
        # ...and control characters are shown as visible escapes.
        assert "\\x1b]0;pwned\\x07" in text and "\\x9b2J" in text and "\\u202eevil" in text
        assert "\\x00\\x7f" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
        assert app.is_running


async def test_hostile_action_on_the_confirmation_screen(tmp_path):
    app = make_app(tmp_path)
    action = Action(
        kind="x",
        title=HOSTILE,
        description=f"Kill {HOSTILE}",
        target=HOSTILE,
        dangerous=True,
        confirm_text=HOSTILE,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(ConfirmScreen(action))
        await pilot.pause()
        text = screen_text(app)
        assert f"Kill {MARKUP}" in text and f"target: {MARKUP}" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
