"""Pilot tests of the dashboard: focus, pause, help, themes, sizes, degraded sources."""

from __future__ import annotations

import asyncio
import re

from app_support import (
    PANE_TITLES,
    T0,
    host_data,
    make_app,
    publish_fixed,
    rules_data,
    screen_text,
    snap,
    terminal_bytes,
)
from app_support import body_text as pane_body_text
from textual.widgets import Footer, Static

from ebpftop.core import alarms as alarms_registry
from ebpftop.core.alarms import Alarm
from ebpftop.core.collector import Collector, SourceUnavailable
from ebpftop.core.model import Health, HealthState
from ebpftop.themes import THEME_NAMES, next_theme
from ebpftop.tui.bindings import KEYMAP, key_display
from ebpftop.tui.key_actions import spec
from ebpftop.tui.panes.base import SourcePane
from ebpftop.tui.screens.help import HelpScreen


def pane(app, source: str) -> SourcePane:
    return app.query_one(f"#pane-{source}", SourcePane)


def body_text(app, source: str) -> str:
    return pane_body_text(pane(app, source))


def health_text(app, source: str) -> str:
    return str(pane(app, source).query_one(".health", Static).render())


async def test_number_keys_and_tab_move_focus(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.focused is pane(app, "flows")
        for key, source in (("3", "canary"), ("2", "rules"), ("4", "profiles"), ("1", "flows")):
            await pilot.press(key)
            assert app.focused is pane(app, source), key
        await pilot.press("tab")
        assert app.focused is pane(app, "rules")
        await pilot.press("tab", "tab", "tab")
        assert app.focused is pane(app, "flows")  # wraps around
        await pilot.press("shift+tab")
        assert app.focused is pane(app, "profiles")


async def test_pause_freezes_display_while_collection_continues(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        bus, store = app.runtime.bus, app.runtime.store
        bus.publish(snap("host", host_data(hostname="before-pause")))
        await pilot.pause()
        assert "before-pause" in screen_text(app)
        assert "PAUSED" not in screen_text(app)

        await pilot.press("space")
        assert app.paused
        bus.publish(snap("host", host_data(hostname="while-paused"), seq=2))
        bus.publish(snap("rules", rules_data(2), seq=1))
        await pilot.pause()
        text = screen_text(app)
        assert store.latest("host").data.hostname == "while-paused"  # the store kept filling
        assert len(store.history("host")) == 2
        assert "before-pause" in text and "while-paused" not in text  # the display did not
        assert "2/256 rules" not in text
        assert "PAUSED" in text

        await pilot.press("space")
        await pilot.pause()
        text = screen_text(app)
        assert not app.paused
        assert "while-paused" in text and "before-pause" not in text
        assert "2/256 rules" in text
        assert "PAUSED" not in text


async def test_help_lists_every_binding_and_closes(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        listing = app.screen.listing()
        shown = " ".join(str(w.render()) for w in app.screen.query(".key, .what"))
        assert shown.split() == listing.split()  # the listing is what is on screen
        for key, action, _show in KEYMAP:
            assert key_display(key) in listing, key
            assert spec(action).help in listing, action
        assert "ctrl+q" in listing  # Textual's own bindings are listed too
        # Each pane's own keys too, under the pane's name.
        from ebpftop.tui.panes.base import SourcePane

        for pane in app.screen_stack[0].query(SourcePane):
            for b in type(pane).__dict__.get("BINDINGS", ()):
                if getattr(b, "tooltip", "") or getattr(b, "description", ""):
                    assert (b.tooltip or b.description) in listing, (pane.title, b.key)
        assert "1 Flows" in listing and "sort by the next column" in listing
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_theme_key_cycles_and_palette_offers_themes(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "ebpftop-dark"
        assert set(THEME_NAMES) <= set(app.available_themes)
        seen = [app.theme]
        for _ in THEME_NAMES:
            await pilot.press("T")
            seen.append(app.theme)
        assert seen == ["ebpftop-dark", *[next_theme(t) for t in seen[:-1]]]
        assert sorted(set(seen)) == sorted(THEME_NAMES) and seen[-1] == seen[0]
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Theme" in titles and "Next theme" in titles


async def test_theme_flag_and_unknown_theme(tmp_path):
    app = make_app(tmp_path, theme="ebpftop-high-contrast")
    async with app.run_test(size=(100, 30)):
        assert app.theme == "ebpftop-high-contrast"
    app = make_app(tmp_path, theme="no-such-theme")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.pause()
        assert app.theme == "ebpftop-dark"
        messages = [n.message for n in app._notifications]
        assert any("unknown theme 'no-such-theme'" in m and "ebpftop-light" in m for m in messages)


async def check_layout(app, pilot, size):
    publish_fixed(app.runtime)
    await pilot.pause()
    text = screen_text(app)
    for title in PANE_TITLES:
        assert title in text, (size, title)
    # Every pane's health is on screen, whatever the size.
    for badge in ("✖ DOWN", "● OK", "○ OFF", "▲ DEGRADED"):
        assert badge in text, (size, badge)
    assert "node-1" in text and "CPU 12%/8" in text and "net ↓120.6 KiB/s" in text
    assert "BPF unavailable: needs root" in text  # what is wrong, without a keypress
    for widget in app.screen.query(SourcePane):
        assert widget.region.right <= size[0] and widget.region.bottom <= size[1]
    return text


async def test_80x24_stacks_panes_and_cuts_nothing_important(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await check_layout(app, pilot, (80, 24))
        assert app.has_class("-narrow")
        xs = {pane(app, s).region.x for s in ("flows", "rules", "canary", "profiles")}
        assert len(xs) == 1  # one column
        # The focused pane shows its body (here: what to do); the others their health.
        assert "What to do: run with sudo" in text
        await pilot.press("2")
        await pilot.pause()
        assert "0/256 rules  on eth0 in+out" in screen_text(app)
        assert pane(app, "rules").region.height > pane(app, "flows").region.height
        footer = app.query_one(Footer)
        assert footer.region.bottom == 24


async def test_200x60_uses_a_2x2_grid(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        text = await check_layout(app, pilot, (200, 60))
        assert not app.has_class("-narrow")
        regions = {s: pane(app, s).region for s in ("flows", "rules", "canary", "profiles")}
        assert regions["flows"].y == regions["rules"].y < regions["canary"].y == regions["profiles"].y
        assert regions["flows"].x == regions["canary"].x < regions["rules"].x == regions["profiles"].x
        assert all(r.width >= 90 and r.height >= 20 for r in regions.values())
        # All four bodies are shown at once, not just the focused one.
        assert "0/256 rules  on eth0 in+out" in text and "What to do: run with sudo" in text
        # Header: full memory detail fits at this width.
        assert "4.0 GiB/16.0 GiB" in text


async def test_resize_switches_layout(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        assert not app.has_class("-narrow")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.has_class("-narrow")


async def test_health_line_says_state_age_message_and_hint(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        publish_fixed(app.runtime)
        await pilot.pause()
        assert health_text(app, "rules").startswith("● OK  updated 3s ago")
        assert "✖ DOWN" in health_text(app, "flows") and "→ run with sudo" in health_text(app, "flows")
        assert "last good 40s ago" in health_text(app, "profiles")  # ages on screen step by 10 s
        assert pane(app, "flows").has_class("-down") and pane(app, "canary").has_class("-off")
        header = str(app.query_one("#header").render()).splitlines()[2]
        # Worst first: down, then degraded, then off; the first one's reason is given.
        assert header.index("flows") < header.index("profiles") < header.index("canary")
        assert "BPF unavailable: needs root" in header


async def test_failure_after_data_keeps_last_good_data_dimmed(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        bus = app.runtime.bus
        bus.publish(snap("rules", rules_data(4), seq=1, t=T0 - 10))
        await pilot.pause()
        assert not pane(app, "rules").has_class("-stale")
        failed = Health(HealthState.DEGRADED, "map read failed: EPERM", "", T0 - 10, 1)
        bus.publish(snap("rules", None, failed, seq=2))
        await pilot.pause()
        assert "4/256 rules" in screen_text(app)
        assert pane(app, "rules").has_class("-stale")
        line = health_text(app, "rules")
        assert "DEGRADED" in line and "last good 10s ago" in line and "map read failed: EPERM" in line


class Unavailable(Collector):
    name = "flows"
    interval = 0.01

    async def collect(self):
        raise SourceUnavailable("BPF unavailable: needs root", "run with sudo")


class Broken(Collector):
    name = "rules"
    interval = 0.01

    async def collect(self):
        raise RuntimeError("boom")


class Works(Collector):
    name = "host"
    interval = 0.01

    async def collect(self):
        return host_data(hostname="live-host")


async def test_failing_collectors_degrade_their_pane_not_the_app(tmp_path):
    app = make_app(tmp_path, collectors=[Unavailable(), Broken(), Works()])
    async with app.run_test(size=(160, 48)) as pilot:
        store = app.runtime.store
        for _ in range(500):  # until every collector has reported (bounded)
            if all(store.latest(s) for s in ("flows", "rules", "host")):
                break
            await asyncio.sleep(0.01)
        await pilot.pause()
        text = screen_text(app)
        assert "live-host" in text
        assert "BPF unavailable: needs root" in health_text(app, "flows")
        assert "RuntimeError: boom" in health_text(app, "rules")
        assert app.is_running
    # on quit the runtime stopped its collectors
    assert all(t.done() for t in app.runtime._tasks) or not app.runtime._tasks


async def test_quit_key_exits_and_stops_runtime(tmp_path):
    app = make_app(tmp_path, collectors=[Works()])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()  # the sources start once the first frame is out
        tasks = list(app.runtime._tasks)
        assert tasks
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running
    assert all(t.done() for t in tasks)


def sgr_params(out: str) -> list[int]:
    return [int(p) for seq in re.findall(r"\x1b\[([0-9;]*)m", out) for p in seq.split(";") if p]


def colour_params(params: list[int]) -> list[int]:
    return [p for p in params if 30 <= p <= 49 or 90 <= p <= 107]


async def test_no_color_env_makes_the_screen_monochrome(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        publish_fixed(app.runtime)
        await pilot.pause()
        assert colour_params(sgr_params(terminal_bytes(app)))  # the check below can fail

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        publish_fixed(app.runtime)
        await pilot.pause()
        assert app.no_color
        params = sgr_params(terminal_bytes(app))
        assert 1 in params  # styles (bold) still reach the terminal...
        assert not colour_params(params)  # ...colours do not
        # States stay readable without colour: they are words, not only colours.
        assert "✖ DOWN" in screen_text(app) and "○ OFF" in screen_text(app)


async def test_a_burst_of_snapshots_redraws_each_pane_once(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        rules = pane(app, "rules")
        shown = []
        original = rules.show
        rules.show = lambda feed: (shown.append(feed.snapshot.seq), original(feed))
        for seq in range(1, 51):
            app.runtime.bus.publish(snap("rules", rules_data(seq), seq=seq))
        for _ in range(100):  # bounded wait for the flush, however slow the machine
            await pilot.pause()
            if shown:
                break
        assert set(shown) == {50}  # no redraw for the 49 superseded snapshots
        assert "50/256 rules" in screen_text(app)


async def test_snapshots_published_from_another_thread_are_shown(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        publish = app.runtime.bus.publish
        await asyncio.to_thread(publish, snap("host", host_data(hostname="from-a-thread")))
        for _ in range(100):  # bounded: the loop picks it up on its next turn
            await pilot.pause()
            if "from-a-thread" in screen_text(app):
                break
        assert "from-a-thread" in screen_text(app)


async def test_a_source_without_collector_says_so_instead_of_starting(tmp_path):
    app = make_app(tmp_path, collectors=[Works()])
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "no collector for this source" in health_text(app, "rules")
        assert pane(app, "rules").has_class("-off")
        problems = screen_text(app).splitlines()[2]
        assert "○ rules" in problems  # listed as off in the header, not as starting


async def wait_for_recorder(app, state: str) -> None:
    for _ in range(1000):  # bounded
        status = app.runtime.store.latest("recorder")
        if status is not None and status.data.state == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"recorder never reached {state!r}")


async def test_recording_shows_a_rec_mark(tmp_path):
    app = make_app(tmp_path, record=str(tmp_path / "session.rec"), record_max_mb=10)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for_recorder(app, "recording")
        await pilot.pause()
        assert "● REC" in screen_text(app).splitlines()[0]


async def test_recording_stop_is_loud(tmp_path):
    rec = tmp_path / "session.rec"
    app = make_app(tmp_path, collectors=[Works()], record=str(rec), record_max_mb=0.002)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await wait_for_recorder(app, "stopped")
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert "REC STOPPED" in lines[0]
        assert "recorder" in lines[2]  # listed with what is wrong
        assert any(n.message.startswith("recording stopped:") for n in app._notifications)
    assert rec.exists()


async def test_a_pane_that_cannot_render_its_data_degrades_alone(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        rules = pane(app, "rules")

        def broken(data, snapshot, now):
            raise KeyError("field the pane expected")

        rules.update_body = broken
        app.runtime.bus.publish(snap("rules", rules_data(1)))
        app.runtime.bus.publish(snap("host", host_data(hostname="still-drawn")))
        await pilot.pause()
        assert "Cannot display this data: KeyError" in body_text(app, "rules")
        assert "still-drawn" in screen_text(app) and app.is_running


async def test_alarms_from_the_data_lead_the_header(tmp_path, monkeypatch):
    app = make_app(tmp_path)

    def hot(latest, history):  # a source's alarm rule, as collectors register them
        return [Alarm("rules", "error", "rule deny-all hit 9k/s", "test")] if latest.data.get("hot") else []

    monkeypatch.setitem(alarms_registry._RULES, "rules", hot)
    async with app.run_test(size=(80, 24)) as pilot:
        publish_fixed(app.runtime)
        rules = pane(app, "rules")
        app.runtime.bus.publish(snap("rules", {"hot": True}, seq=2))
        await pilot.pause()
        problems = screen_text(app).splitlines()[2]
        assert problems.startswith(" ✖ rule deny-all hit 9k/s")
        assert problems.index("deny-all") < problems.index("flows")  # before source health
        assert rules.border_subtitle == "rule deny-all hit 9k/s" and rules.has_class("-alarm")
        # Data that no longer raises it clears it; so does data going stale.
        app.runtime.bus.publish(snap("rules", {"hot": False}, seq=3))
        await pilot.pause()
        assert "deny-all" not in screen_text(app) and not rules.has_class("-alarm")


async def test_command_palette_switches_theme(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"next theme")
        for _ in range(50):  # bounded: the palette searches in a worker
            await pilot.pause()
            if app.screen.query("CommandList Option") or app.screen.query("OptionList"):
                break
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == next_theme("ebpftop-dark")
