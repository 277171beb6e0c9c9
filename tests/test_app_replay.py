"""The app on a recording (tests/data/demo.rec): what the panes show, replay keys."""

from __future__ import annotations

import pathlib

from app_support import body_text, screen_text, settings
from textual.widgets import Static

from ebpftop.core.model import HealthState
from ebpftop.core.replay import ReplayRuntime
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes import fmt
from ebpftop.tui.panes.base import SourcePane
from ebpftop.tui.text import clean

DATA = pathlib.Path(__file__).parent / "data"


def replay_app(tmp_path, name: str = "demo.rec") -> EbpftopApp:
    runtime = ReplayRuntime.from_file(settings(tmp_path), str(DATA / name))
    runtime.replay.paused = True  # driven by keys only: no timing in these tests
    return EbpftopApp(runtime)


def header(app) -> str:
    return str(app.query_one("#header").render())


async def test_replay_shows_the_recorded_state_and_steps(tmp_path):
    app = replay_app(tmp_path)
    replay = app.runtime.replay
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        assert "READ-ONLY" in app.title  # a replay can do nothing
        assert "REPLAY" in header(app) and "paused" in header(app)
        while app.runtime.store.latest("profiles") is None:
            assert not replay.at_end
            await pilot.press("right_square_bracket")
        await pilot.pause()
        host = app.runtime.store.latest("host").data
        text = screen_text(app)
        assert host.hostname in text and f"CPU {fmt.percent(host.cpu_percent)}/{host.cpu_count}" in text
        now = replay.tick_time(replay.position)  # ages use the recording's clock
        for pane in app.query(SourcePane):
            recorded = app.runtime.store.latest(pane.source)
            h = recorded.health
            assert pane.has_class(f"-{h.state.value}"), pane.source
            line = str(pane.query_one(".health", Static).render())
            assert clean(h.message, 300) in line
            if h.state is HealthState.OK:
                assert f"updated {fmt.duration(now - h.last_ok)} ago" in line
            if recorded.data is None and h.hint:
                assert f"What to do: {clean(h.hint, 200)}" in body_text(pane)

        position = replay.position
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert replay.position == position + 2
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert replay.position == position + 1
        assert (
            app.runtime.store.latest("host").data.cpu_percent == replay.store.latest("host").data.cpu_percent
        )
        assert fmt.percent(app.runtime.store.latest("host").data.cpu_percent) in screen_text(app)

        await pilot.press("greater_than_sign")
        assert replay.speed == 2 and "×2" in header(app)
        await pilot.press("less_than_sign", "less_than_sign")
        assert replay.speed == 0.5 and "×0.5" in header(app)
        await pilot.press("space")
        assert not replay.paused and "paused" not in header(app) and not app.paused
        await pilot.press("space")
        assert replay.paused and "PAUSED" in header(app)


async def test_replay_marker_is_shown(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        while app.runtime.store.latest("marker") is None:
            assert not app.runtime.replay.at_end
            await pilot.press("right_square_bracket")
        await pilot.pause()
        marker = app.runtime.store.latest("marker").data
        assert any(marker.text in n.message for n in app._notifications)


async def test_damaged_recording_says_where_it_stopped(tmp_path):
    app = replay_app(tmp_path, "damaged.rec")
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await pilot.pause()
        damage = app.runtime.replay.damage
        assert damage
        assert any("recording damaged" in n.message and "line" in n.message for n in app._notifications)


async def test_replay_keys_absent_without_a_replay(tmp_path):
    from app_support import make_app

    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)):
        assert app.check_action("replay_step", (1,)) is False
        shown = {b.key for (_n, b, enabled, _t) in app.screen.active_bindings.values() if enabled and b.show}
        assert not shown & {
            "left_square_bracket",
            "right_square_bracket",
            "less_than_sign",
            "greater_than_sign",
        }
    app = replay_app(tmp_path)
    async with app.run_test(size=(160, 48)):
        shown = {b.key for (_n, b, enabled, _t) in app.screen.active_bindings.values() if enabled and b.show}
        assert {"left_square_bracket", "right_square_bracket"} <= shown
        assert "m" not in shown
