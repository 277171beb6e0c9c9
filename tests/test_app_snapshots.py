"""Snapshot tests (pytest-textual-snapshot) of the main screen with fixed data and a
frozen clock, so the SVGs only change when the screen does.

Regenerate after an intended change: `.venv/bin/python -m pytest tests/test_app_snapshots.py
--snapshot-update`, then look at the SVGs in tests/__snapshots__ before committing.
"""

from __future__ import annotations

from app_support import make_app, publish_fixed


async def _fixed(pilot) -> None:
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
