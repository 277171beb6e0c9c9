"""Actions in the app: the marker through prompt, confirmation and gate; kiosk mode."""

from __future__ import annotations

import asyncio
import json

from app_support import make_app, publish_fixed, screen_text
from textual.app import SuspendNotSupported
from textual.widgets import Footer, Input, Static

from ebpftop.core.gate import Action
from ebpftop.tui.screens.confirm import ConfirmScreen
from ebpftop.tui.screens.prompt import PromptScreen


def audit_events(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def markers(app) -> list:
    return [s.data for s in app.runtime.store.history("marker")]


def footer_keys(app) -> set[str]:
    return {b.key for (_node, b, enabled, _tip) in app.screen.active_bindings.values() if b.show and enabled}


async def test_marker_prompt_confirm_gate_and_toast(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"db failover")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        shown = str(app.screen.query_one("#confirm-description", Static).render())
        assert "Publish the incident marker 'db failover'" in shown
        assert markers(app) == []  # nothing happens before the confirmation
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [m.text for m in markers(app)] == ["db failover"]
        events = [e["event"] for e in audit_events(tmp_path)]
        assert events == ["intent", "result"]
        toasts = [n.message for n in app._notifications]
        assert "marker added" in toasts
        assert any("db failover" in t for t in toasts)  # the marker itself shows up


async def test_marker_cancelled_at_confirmation_does_nothing(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("m", *"oops", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert markers(app) == []
        assert [e["event"] for e in audit_events(tmp_path)] == ["cancelled"]
        assert any("cancelled" in n.message for n in app._notifications)


async def test_marker_escape_at_prompt_and_bad_text(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("m", "escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        await pilot.press("m", "space", "enter")  # blank text: rejected before the gate
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert markers(app) == [] and audit_events(tmp_path) == []
        assert any("marker not added: marker text is empty" in n.message for n in app._notifications)


async def test_confirm_screen_requires_the_typed_text(tmp_path):
    app = make_app(tmp_path)
    action = Action(
        kind="rollout.rollback",
        title="Roll back canary",
        target="checkout",
        description="Set canary weight of checkout to 0 in HAProxy backend web.",
        dangerous=True,
        confirm_text="checkout",
    )
    results = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ConfirmScreen(action), results.append)
        await pilot.pause()
        screen = app.screen
        assert screen.has_class("-dangerous")
        assert "checkout" in str(screen.query_one("#confirm-target", Static).render())
        await pilot.press("enter")  # nothing typed: not confirmed
        await pilot.press(*"checkou", "enter")  # almost: still not
        await pilot.pause()
        assert app.screen is screen and results == []
        assert "Type checkout exactly" in str(screen.query_one("#confirm-error", Static).render())
        await pilot.press("t", "enter")
        await pilot.pause()
        assert results == [True]
        app.push_screen(ConfirmScreen(action), results.append)
        await pilot.pause()
        await pilot.press(*"checkout", "escape")
        await pilot.pause()
        assert results == [True, False]


async def test_kiosk_hides_and_refuses_actions(tmp_path):
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        publish_fixed(app.runtime)
        await pilot.pause()
        assert "READ-ONLY" in app.title and "READ-ONLY" in screen_text(app)
        assert app.has_class("-kiosk")
        keys = footer_keys(app)
        assert "m" not in keys and "q" in keys and "space" in keys
        footer = app.query_one(Footer)
        assert "Marker" not in screen_text(app).splitlines()[-1]
        assert footer.region.height == 1
        assert app.check_action("marker", ()) is False
        # The key does nothing: no prompt, no marker, nothing audited by the key.
        await pilot.press("m")
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        assert markers(app) == [] and audit_events(tmp_path) == []
        # Through Textual's action dispatch: check_action stops it.
        await app.run_action("marker")
        await app.workers.wait_for_complete()
        assert audit_events(tmp_path) == []
        # The method called directly: refused by the app and by the gate (audited).
        app.action_marker()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen) and markers(app) == []
        events = audit_events(tmp_path)
        assert [e["event"] for e in events] == ["refused"]
        assert any("refused" in n.message for n in app._notifications)
        # No action in the command palette, no suspend.
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Add incident marker" not in titles and "Screenshot" not in titles
        assert {"Theme", "Help", "Quit"} <= titles
        assert app.check_action("suspend_process", ()) is False
        assert "ctrl+z" not in {
            b.key for (_n, b, enabled, _t) in app.screen.active_bindings.values() if enabled
        }
        await pilot.press("ctrl+z")
        assert app.is_running
        try:
            with app.suspend():
                raise AssertionError("suspended in kiosk mode")
        except SuspendNotSupported:
            pass


async def test_normal_mode_shows_marker_in_footer_and_palette(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert "m" in footer_keys(app)
        assert "READ-ONLY" not in app.title
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Add incident marker" in titles


async def test_input_keys_are_not_app_bindings_while_typing(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*"q1 T?m")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and app.is_running
        assert app.screen.query_one(Input).value == "q1 T?m"
        assert app.theme == "ebpftop-dark" and not app.paused
        await pilot.press("escape")


# --- actions that end by themselves are audited too (issue 16, item 9) ----------------------


async def test_quitting_during_an_auto_rollback_countdown_audits_it_as_abandoned(tmp_path):
    from test_rollout_tui import Clock, FakeController, auto_app, fail_twice

    from ebpftop.tui.panes.canary.rollback import CountdownScreen

    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await fail_twice(pilot, app)
        assert isinstance(app.screen, CountdownScreen)
        clock.now += 10
        app.exit()  # what `q` on the main screen, the palette's Quit or a signal end in
        await pilot.pause()
    assert ctl.sent == []
    [entry] = audit_events(tmp_path)
    assert (entry["event"], entry["automatic"], entry["action"]["kind"]) == (
        "cancelled",
        False,
        "rollout.rollback",
    )
    assert entry["message"] == (
        "abandoned: the dashboard quit during the countdown with 20s of 30s left: nothing was sent"
    )
    assert entry["action"]["params"]["evidence"]["verdict"] == "fail"


class SessionBook:
    """A RuleBook's rule list without pins or maps; `end_session` is the real one."""

    def __init__(self, rules) -> None:
        self.rules = list(rules)

    def read(self):
        from ebpftop.collectors.rules.ruleset import Current

        return Current(list(self.rules), 1, 100)

    def read_counted(self):
        return self.read(), {}

    def apply(self, change, author: str = ""):
        from ebpftop.collectors.rules.ruleset import Applied

        before, self.rules = self.rules, change(list(self.rules))
        return Applied(before, self.rules, [], [])

    def close(self) -> None:
        pass

    class dp:
        @staticmethod
        def links():
            return []


def session_book(monkeypatch):
    import os

    from ebpftop.collectors.rules import collector as rules_collector
    from ebpftop.collectors.rules.grammar import parse_rule
    from ebpftop.collectors.rules.ruleset import RuleBook

    rules = [
        parse_rule('count udp to any port 53 "mine"').with_(id=1, slot=1, session=os.getpid()),
        parse_rule('count tcp to any port 22 "another dashboard"').with_(
            id=2, slot=2, session=1
        ),  # pid 1 lives
        parse_rule('deny tcp to any port 6379 "enforced"').with_(id=3, slot=3),
    ]
    book = SessionBook(rules)
    book.end_session = RuleBook.end_session.__get__(book)
    monkeypatch.setattr(RuleBook, "from_settings", classmethod(lambda cls, settings: book))
    monkeypatch.setattr(rules_collector.os, "geteuid", lambda: 0)  # start() wants root for the pins
    return book


async def quit_keeping_enforced_rules(tmp_path, **changes) -> None:
    from dataclasses import replace

    from app_support import NOW, settings

    from ebpftop.cli.wiring import dashboard_runtime
    from ebpftop.collectors.rules.collector import RulesCollector
    from ebpftop.tui.app import EbpftopApp
    from ebpftop.tui.screens.quit_rules import QuitRulesScreen

    s = replace(settings(tmp_path), **changes)
    # the dashboard's wiring: it registers the session's cleanup on the runtime
    app = EbpftopApp(dashboard_runtime(s, [RulesCollector(s)]), clock=lambda: NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(100):  # until the collector has started and read the rules
            if app.runtime.store.latest("rules") is not None:
                break
            await pilot.pause(0.05)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitRulesScreen)  # the deny stays enforcing: asked
        await pilot.press("k")
        await pilot.pause()
    assert not app.is_running


async def test_this_sessions_count_rules_removed_at_quit_are_audited(tmp_path, monkeypatch):
    book = session_book(monkeypatch)
    await quit_keeping_enforced_rules(tmp_path)
    assert [r.id for r in book.rules] == [2, 3]  # only this dashboard's count rule went
    intent, result = audit_events(tmp_path)
    assert (intent["event"], intent["automatic"], intent["action"]["kind"]) == (
        "intent",
        True,
        "rules.delete",
    )
    assert intent["action"]["params"]["ids"] == [1]
    assert intent["action"]["description"] == (
        'The dashboard session that added them ended. Delete:\n  1: count udp to any port 53 "mine"'
    )
    assert (result["event"], result["ref"], result["ok"]) == ("result", intent["seq"], True)
    assert result["message"] == "2 rules enforced"


async def test_count_rules_stay_when_their_removal_cannot_be_audited(tmp_path, monkeypatch):
    book = session_book(monkeypatch)
    (tmp_path / "blocked").write_text("")  # the audit log's directory is a file
    await quit_keeping_enforced_rules(tmp_path, audit_log=str(tmp_path / "blocked" / "audit.jsonl"))
    assert [r.id for r in book.rules] == [1, 2, 3]  # an unaudited change is worse than none


async def stopped_after_rules_read(runtime) -> None:
    await runtime.start()
    try:
        for _ in range(100):  # until the collector has started and read the rules
            if runtime.store.latest("rules") is not None:
                break
            await asyncio.sleep(0.05)
        assert runtime.store.latest("rules") is not None
    finally:
        await runtime.stop()


async def test_kiosk_keeps_the_session_count_rules_and_audits_the_refusal(tmp_path, monkeypatch):
    from dataclasses import replace

    from app_support import settings

    from ebpftop.cli.wiring import dashboard_runtime
    from ebpftop.collectors.rules.collector import RulesCollector

    book = session_book(monkeypatch)
    s = replace(settings(tmp_path), kiosk=True)
    await stopped_after_rules_read(dashboard_runtime(s, [RulesCollector(s)]))
    assert [r.id for r in book.rules] == [1, 2, 3]  # read-only: the gate refuses every change
    [refused] = audit_events(tmp_path)
    assert (refused["event"], refused["automatic"], refused["action"]["params"]["ids"]) == (
        "refused",
        True,
        [1],
    )


async def test_only_the_dashboard_wiring_ends_the_session(tmp_path, monkeypatch):
    """A bare Runtime (the headless snapshot, a test) never acts as it stops; the rules
    source itself only closes its book."""
    from app_support import settings

    from ebpftop.collectors.rules.collector import RulesCollector
    from ebpftop.core.runtime import Runtime

    book = session_book(monkeypatch)
    s = settings(tmp_path)
    await stopped_after_rules_read(Runtime(s, [RulesCollector(s)]))
    assert [r.id for r in book.rules] == [1, 2, 3]
    assert audit_events(tmp_path) == []
