"""Snapshot tests (pytest-textual-snapshot) of the main screen: every pane with the real
payloads of tests/test_pane_snapshots.py (the header with its alarms: a failing canary,
growing flow evictions), a frozen clock, so the SVGs only change when the screen does;
and the screen when every source is unavailable (down, off, degraded, rules with none).

Regenerate after an intended change: `.venv/bin/python -m pytest tests/test_app_snapshots.py
--snapshot-update`, then look at the SVGs in tests/__snapshots__ before committing.
"""

from __future__ import annotations

from app_support import make_app, publish_fixed
from test_pane_snapshots import publish_real


async def _fixed(pilot) -> None:
    publish_real(pilot.app.runtime)
    await pilot.pause()
    pilot.app.clear_notifications()  # the start notice of enforced rules would cover the panes
    await pilot.pause()


async def _unavailable(pilot) -> None:
    publish_fixed(pilot.app.runtime)
    await pilot.pause()


def test_main_screen_80x24(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=_fixed)


def test_main_screen_160x48(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=_fixed)


def test_kiosk_80x24(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path, kiosk=True), terminal_size=(80, 24), run_before=_fixed)


def test_paused_rules_focused_80x24(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=_fixed, press=["2", "space"])


def test_help_80x24(snap_compare, tmp_path):
    assert snap_compare(
        make_app(tmp_path), terminal_size=(80, 24), run_before=_fixed, press=["question_mark"]
    )


def test_high_contrast_theme_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path, theme="ebpftop-high-contrast")
    assert snap_compare(app, terminal_size=(80, 24), run_before=_fixed)


def test_light_theme_160x48(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path, theme="ebpftop-light"), terminal_size=(160, 48), run_before=_fixed)


def test_sources_unavailable_80x24(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=_unavailable)


def test_sources_unavailable_160x48(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=_unavailable)


def test_rules_enforced_notice_160x48(snap_compare, tmp_path):
    """At start, allow/deny rules enforced from before are listed in a notice."""

    async def run_before(pilot) -> None:
        publish_real(pilot.app.runtime)
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), run_before=run_before)
