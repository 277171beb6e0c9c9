"""The command palette's Screenshot, as root with no ~/Downloads: it saves in the current
directory, or in the temporary directory when the current one is gone, and the toast
says where (and why not the first place); nothing crashes when nowhere takes it."""

from __future__ import annotations

import os
import tempfile

import pytest
from app_support import make_app


@pytest.fixture
def places(tmp_path, monkeypatch):
    home = tmp_path / "home"  # no Downloads in it
    home.mkdir()
    here = tmp_path / "here"
    here.mkdir()
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(here)
    return here, temp


async def palette_screenshot(app, pilot) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*"Screenshot")
    await pilot.pause(0.3)
    await pilot.press("enter")
    for _ in range(40):  # the palette runs it on a short timer, once it has closed
        if app._notifications:
            return
        await pilot.pause(0.05)


async def test_palette_screenshot_saves_in_the_current_directory_and_says_where(tmp_path, places):
    here, temp = places
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await palette_screenshot(app, pilot)
        shots = sorted(here.glob("*.svg"))
        assert len(shots) == 1 and list(temp.iterdir()) == []
        assert [n.message for n in app._notifications] == [f"saved {shots[0]}"]


async def test_palette_screenshot_without_a_current_directory_goes_to_the_temporary_one(tmp_path, places):
    here, temp = places
    os.rmdir(here)  # the directory ebpftop was started in is gone
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await palette_screenshot(app, pilot)
        shots = sorted(temp.glob("*.svg"))
        assert len(shots) == 1
        [toast] = app._notifications
        assert toast.message == f"saved {shots[0]}" and toast.severity == "information"
        assert app.is_running


async def test_nowhere_to_save_is_said_and_the_dashboard_stays(tmp_path, places):
    here, temp = places
    os.rmdir(here)
    os.rmdir(temp)
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await palette_screenshot(app, pilot)
        [toast] = app._notifications
        assert toast.severity == "error"
        assert toast.message.startswith(f"not saved: {temp}: ") and "No such file" in toast.message
        assert app.is_running
