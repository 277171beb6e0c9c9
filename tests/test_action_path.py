"""Every action key goes through the one action path (tui/action_path.py).

Read-only: each key is inert (check_action), and its method called directly is refused
once, audited as a refusal of its own kind, and performs nothing. Live, with a fake
gate that records and declines: each key (m; a e d t in Rules; c in Profiles; R; the
removal of enforced rules at quit) and the automatic rollback reach the gate exactly
once. A worker that dies of an error is a visible message, audited when it was an
action the gate never saw.
"""

from __future__ import annotations

import json

import pytest
from app_support import NOW, ok, settings, snap
from test_canary_pane import canary_snap, service
from test_profiles_pane import FakeProfilesCollector, profiles_data
from test_rollout_tui import Clock, FakeController, wait_for
from test_rules_pane import Kernel, seed
from test_rules_pane import kernel as kernel  # the fixture
from textual.widgets import Input

from ebpftop.actions.rollback_control import RollbackControl
from ebpftop.collectors.rollout.collector import RolloutCollector
from ebpftop.core.gate import Action, ActionResult, Gate
from ebpftop.core.runtime import Runtime
from ebpftop.tui.action_path import ActionRequest, Dialogs
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.canary.rollback import CountdownScreen
from ebpftop.tui.panes.profiles.pane import ProfilesPane
from ebpftop.tui.panes.rules.edit import RuleEditScreen
from ebpftop.tui.panes.rules.pane import RulesPane
from ebpftop.tui.screens.prompt import PromptScreen
from ebpftop.tui.screens.quit_rules import QuitRulesScreen

# (key, the pane that binds it or None for the app, the action, the audit kind)
KEYS = (
    ("m", None, "marker", "marker.add"),
    ("R", None, "rollback", "rollout.rollback"),
    ("a", RulesPane, "add_rule", "rules.add"),
    ("e", RulesPane, "edit_rule", "rules.edit"),
    ("d", RulesPane, "delete_rule", "rules.delete"),
    ("t", RulesPane, "toggle_rule", "rules.action"),
    ("c", ProfilesPane, "capture", "profiles.capture"),
)


def audit(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def full_app(tmp_path, kernel: Kernel, *, kiosk: bool = False, clock=None) -> tuple[EbpftopApp, dict]:
    """Every action available: rules (fake kernel), a profiles collector, a rollout
    controller, auto-rollback after two failing evaluations."""
    seed(kernel, "count tcp to any port 6379", 'deny tcp from 203.0.113.0/24 to any port 22 "ssh"')
    s = settings(
        tmp_path,
        kiosk=kiosk,
        rollout_service="checkout",
        rollout_interval=0.2,
        auto_rollback=True,
        auto_rollback_evaluations=2,
        auto_rollback_countdown=30.0,
    )
    fakes = {"profiles": FakeProfilesCollector(), "controller": FakeController()}
    runtime = Runtime(s, collectors=[fakes["profiles"], RolloutCollector(s, controller=fakes["controller"])])
    app = EbpftopApp(runtime, clock=lambda: NOW)
    if clock is not None:
        app.rollback_control = RollbackControl(runtime, read_only=app.read_only, clock=clock)
    return app, fakes


async def publish_all(pilot, app, kernel: Kernel) -> None:
    bus = app.runtime.bus
    bus.publish(snap("rules", kernel.data(), ok(NOW - 1), t=NOW - 1))
    bus.publish(snap("profiles", profiles_data(), ok(NOW - 1), t=NOW - 1))
    await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
    await pilot.pause()


def target(app, pane_cls):
    return app if pane_cls is None else app.query_one(pane_cls)


async def test_read_only_every_action_key_is_refused_once_audited_and_does_nothing(tmp_path, kernel):
    app, fakes = full_app(tmp_path, kernel, kiosk=True)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await publish_all(pilot, app, kernel)
        for key, pane_cls, action, _kind in KEYS:
            node = target(app, pane_cls)
            assert node.check_action(action, ()) is False, action  # hidden and inert
            if pane_cls is not None:
                node.focus()
                await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app._main_screen, key
        assert audit(tmp_path) == []  # a key that does nothing writes nothing
        refused: list[str] = []
        refuse = app.action_path.refuse
        app.action_path.refuse = lambda request: (refused.append(request.kind), refuse(request))[1]
        for i, (_key, pane_cls, action, kind) in enumerate(KEYS):
            before = len(audit(tmp_path))
            getattr(target(app, pane_cls), f"action_{action}")()  # bypassing the binding
            assert refused[i:] == [kind]
            await app.workers.wait_for_complete()
            await pilot.pause()
            said = [n.message for n in app._notifications]
            assert any(m.startswith("read-only:") and m.endswith(" refused") for m in said), said
            entries = audit(tmp_path)[before:]
            assert [(e["event"], e["action"]["kind"]) for e in entries] == [("refused", kind)], action
            assert app.screen is app._main_screen
        assert refused == [kind for *_rest, kind in KEYS]
    assert fakes["controller"].sent == [] and fakes["profiles"].asked == []
    assert kernel.applied == 0
    assert not app.runtime.store.history("marker")


class RecordingGate(Gate):
    """The runtime's gate, except that `execute` records and declines: it never asks
    and never performs."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls: list[tuple[str, bool]] = []

    async def execute(self, action: Action, perform, confirm, *, automatic: bool = False) -> ActionResult:
        self.calls.append((action.kind, automatic))
        return ActionResult(False, "declined by the recording gate", cancelled=True)


@pytest.fixture
def recording_gate(monkeypatch):
    import ebpftop.core.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "Gate", RecordingGate)


async def until_main(pilot, app) -> None:
    await app.workers.wait_for_complete()
    await wait_for(pilot, lambda: app.screen is app._main_screen)


async def test_live_every_action_key_reaches_the_gate_exactly_once(tmp_path, kernel, recording_gate):
    clock = Clock()
    app, fakes = full_app(tmp_path, kernel, clock=clock)
    gate = app.runtime.gate
    assert isinstance(gate, RecordingGate)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await publish_all(pilot, app, kernel)

        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"db failover", "enter")
        await until_main(pilot, app)
        assert gate.calls == [("marker.add", False)]

        await pilot.press("R")
        await until_main(pilot, app)
        assert gate.calls[1:] == [("rollout.rollback", False)]

        pane = app.query_one(RulesPane)
        pane.focus()
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleEditScreen))
        app.screen.query_one(Input).value = "count udp to any port 53"
        await pilot.press("enter")
        await until_main(pilot, app)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleEditScreen))
        app.screen.query_one(Input).value = "count tcp to any port 6380"
        await pilot.press("enter")
        await until_main(pilot, app)
        for key in ("d", "t"):
            await pilot.press(key)
            await until_main(pilot, app)
        assert gate.calls[2:] == [
            ("rules.add", False),
            ("rules.edit", False),
            ("rules.delete", False),
            ("rules.action", False),
        ]

        app.query_one(ProfilesPane).focus()
        await pilot.press("down", "down", "c")  # the canary row, pid 933
        await until_main(pilot, app)
        assert gate.calls[6:] == [("profiles.capture", False)]

        # The countdown runs out: the automatic rollback reaches the gate once, automatic.
        for i in range(2):
            app.runtime.bus.publish(canary_snap(service(at=NOW + i), seq=20 + i))
            await pilot.pause()
        await wait_for(pilot, lambda: isinstance(app.screen, CountdownScreen))
        clock.now += 31
        await wait_for(pilot, lambda: len(gate.calls) == 8)
        await until_main(pilot, app)
        assert gate.calls[7:] == [("rollout.rollback", True)]

        # q with a deny rule enforced: remove -> the gate once (declined: stays open).
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitRulesScreen))
        await pilot.press("r")
        await wait_for(pilot, lambda: len(gate.calls) == 9)
        assert gate.calls[8:] == [("rules.delete", False)]
        await until_main(pilot, app)
        assert app.is_running
    assert fakes["controller"].sent == [] and fakes["profiles"].asked == [] and kernel.applied == 0
    assert not app.runtime.store.history("marker")


async def settled(pilot, app) -> None:
    # not workers.wait_for_complete(): it raises the error these workers die of
    await wait_for(pilot, lambda: all(w.is_finished for w in app.workers))
    await pilot.pause()


async def test_a_failing_action_worker_is_shown_and_audited_not_fatal(tmp_path, kernel):
    app, _fakes = full_app(tmp_path, kernel)

    async def broken(_dialogs: Dialogs):
        raise ValueError("unreachable")

    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        # A preparation that fails: said in a toast, nothing reaches the gate.
        app.act(ActionRequest("test.prepare", "Test action", broken, failed_prefix="test: nothing done"))
        await settled(pilot, app)
        assert any(n.message == "test: nothing done: unreachable" for n in app._notifications)
        assert audit(tmp_path) == []

        # An error the path does not expect (here: in the follow-up after the report)
        # kills the worker: the handler says so, and since the gate saw the action
        # (intent and result are in the log) nothing more is written.
        async def fine(_dialogs: Dialogs):
            async def run(gate, confirm):
                return await gate.execute(
                    Action("test.run", "Test run", "nothing"), _return_ok, confirm, automatic=True
                )

            return run

        def boom(_result) -> None:
            raise RuntimeError("follow-up broke")

        app.act(ActionRequest("test.run", "Test run", fine, then=boom))
        await settled(pilot, app)
        assert app.is_running
        assert any(
            "test.run failed: RuntimeError: follow-up broke" in n.message and n.title == "internal error"
            for n in app._notifications
        )
        assert [e["event"] for e in audit(tmp_path)] == ["intent", "result"]

        # One that dies before the gate answered: recorded as not completed.
        async def early(_dialogs: Dialogs):
            async def run(gate, confirm):
                raise RuntimeError("broke before the gate")

            return run

        app.act(ActionRequest("test.early", "Test early", early))
        await settled(pilot, app)
        assert app.is_running
        last = audit(tmp_path)[-1]
        assert (last["event"], last["action"]["kind"]) == ("cancelled", "test.early")
        assert last["message"] == "failed: RuntimeError: broke before the gate"


async def _return_ok() -> str:
    return "ok"
