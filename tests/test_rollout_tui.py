"""Rollback from the dashboard (Pilot, no root), with a fake controller that records
what it was sent, through the runtime's real gate and audit log: `R` shows the
evidence and the plan and wants the service name typed; the wrong name does nothing,
the right one performs; intent and result are audited; kiosk hides and refuses it.
Auto-rollback: the countdown is shown, a key cancels it, and without a key it fires
(a fake clock drives the countdown)."""

from __future__ import annotations

import json

import pytest
from app_support import NOW, screen_text, settings
from test_canary_pane import canary_snap, service, summary_text
from textual.widgets import Input, Static

from ebpftop.actions.rollback_control import RollbackControl
from ebpftop.collectors.rollout.base import Controller
from ebpftop.collectors.rollout.collector import RolloutCollector
from ebpftop.collectors.rollout.model import Plan, Request, RolloutState
from ebpftop.core.runtime import Runtime
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.canary.rollback import CountdownScreen
from ebpftop.tui.screens.confirm import ConfirmScreen


class FakeController(Controller):
    kind = "fake"

    def __init__(self, service: str = "checkout", *, can_rollback: bool = True) -> None:
        super().__init__(service)
        self.sent: list[Plan] = []
        self.can_rollback = can_rollback

    @property
    def endpoint(self) -> str:
        return "fake://lb:9999"

    async def state(self) -> RolloutState:
        weight = 0.0 if self.sent else 10.0
        return RolloutState(
            self.service,
            self.kind,
            self.endpoint,
            "rev-1",
            "rev-2",
            100.0 - weight,
            weight,
            "Paused" if self.sent else "Progressing",
            can_rollback=self.can_rollback,
            rollback_reason="" if self.can_rollback else "not allowed by RBAC",
        )

    def plan_rollback(self, state=None) -> Plan:
        return Plan(
            "rollback",
            self.kind,
            self.endpoint,
            "canary servers to weight 0",
            (Request("runtime-api", self.endpoint, "set server be_app/canary weight 0"),),
        )

    async def rollback(self, plan: Plan) -> str:
        self.sent.append(plan)
        return "canary weight 0, all traffic to stable"


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def rollout_app(tmp_path, ctl: FakeController | None, **changes) -> EbpftopApp:
    s = settings(tmp_path, rollout_service="checkout", rollout_interval=0.2, **changes)
    collectors = [RolloutCollector(s, controller=ctl)] if ctl is not None else []
    return EbpftopApp(Runtime(s, collectors=collectors), clock=lambda: NOW)


def audit(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def footer_keys(app) -> set[str]:
    return {b.key for (_n, b, enabled, _t) in app.screen.active_bindings.values() if b.show and enabled}


async def wait_for(pilot, cond, tries: int = 100, detail=lambda: "") -> None:
    """Let the app run until `cond()` holds (a bound on waiting, not a speed check)."""
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.05)
    assert cond(), detail()


async def test_R_confirms_with_evidence_and_plan_then_rolls_back_audited(tmp_path):
    ctl = FakeController()
    app = rollout_app(tmp_path, ctl)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        app.runtime.bus.publish(canary_snap(service()))
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        assert "R" in footer_keys(app)
        await pilot.press("3")
        # the screen follows the store in the next frame slot (tui/flush.py)
        await wait_for(pilot, lambda: "rollout fake  phase Progressing" in summary_text(app))
        assert "stable rev-1 90%" in summary_text(app)
        assert "R: roll back, all traffic to stable (type the service name to confirm)" in summary_text(app)

        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        shown = str(app.screen.query_one("#confirm-description", Static).render())
        assert "Will send to fake at fake://lb:9999" in shown
        assert "runtime-api fake://lb:9999" in shown and "set server be_app/canary weight 0" in shown
        assert shown.count("fake://lb:9999") == 2  # where, once; then the request itself
        assert "Evidence: verdict FAIL: canary 5xx ratio 2% > 0.5% for 3/3 evaluations" in shown
        assert "canary p99 0.45s, errors 2.00%" in shown

        await pilot.press(*"checkou", "enter")  # wrong name: nothing happens
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and ctl.sent == [] and audit(tmp_path) == []
        app.screen.query_one(Input).value = ""
        await pilot.press(*"checkout", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(ctl.sent) == 1 and ctl.sent[0].summary == "canary servers to weight 0"
        entries = audit(tmp_path)
        assert [e["event"] for e in entries] == ["intent", "result"]
        intent, result = entries
        assert intent["action"]["kind"] == "rollout.rollback" and not intent.get("automatic")
        assert intent["action"]["params"]["evidence"]["verdict"] == "fail"
        assert (
            intent["action"]["params"]["plan"]["requests"][0]["body"] == "set server be_app/canary weight 0"
        )
        assert result["ok"] is True and result["message"] == "canary weight 0, all traffic to stable"
        toasts = [n.message for n in app._notifications]
        assert "rollback of checkout: canary weight 0, all traffic to stable" in toasts
        # The pane shows the new weights once the collector reads them.
        await wait_for(pilot, lambda: "stable rev-1 100%" in summary_text(app))


async def test_R_cancelled_and_unavailable(tmp_path):
    ctl = FakeController(can_rollback=False)
    app = rollout_app(tmp_path, ctl)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        await pilot.press("R")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and ctl.sent == [] and audit(tmp_path) == []
        assert any(n.message == "rollback unavailable: not allowed by RBAC" for n in app._notifications)
        ctl.can_rollback = True
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout").data.services[0].can_rollback)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert ctl.sent == [] and [e["event"] for e in audit(tmp_path)] == ["cancelled"]


async def test_no_controller_no_R(tmp_path):
    app = rollout_app(tmp_path, None)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "R" not in footer_keys(app)
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and audit(tmp_path) == []


async def test_kiosk_R_absent_and_inert_and_refused_by_the_gate(tmp_path):
    ctl = FakeController()
    app = rollout_app(tmp_path, ctl, kiosk=True, auto_rollback=True, auto_rollback_evaluations=1)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        app.runtime.bus.publish(canary_snap(service()))
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        assert "R" not in footer_keys(app)
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and ctl.sent == [] and audit(tmp_path) == []
        # Called directly (bypassing the hidden binding): refused, and the gate audits the refusal.
        app.action_rollback()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert ctl.sent == []
        assert [e["event"] for e in audit(tmp_path)] == ["refused"]
        # No auto-rollback countdown in read-only mode, however the canary fails.
        for i in range(3):
            app.runtime.bus.publish(canary_snap(service(at=NOW + i), seq=10 + i))
        await pilot.pause()
        assert not isinstance(app.screen, CountdownScreen)
        assert "auto-rollback off: read-only" in summary_text(app)
        assert "R: roll back" not in summary_text(app)  # no key offered that would be refused


def auto_app(tmp_path, ctl, clock, evaluations: int = 2) -> EbpftopApp:
    app = rollout_app(
        tmp_path, ctl, auto_rollback=True, auto_rollback_evaluations=evaluations, auto_rollback_countdown=30.0
    )
    app.rollback_control = RollbackControl(app.runtime, read_only=app.read_only, clock=clock)
    return app


async def fail_twice(pilot, app) -> None:
    for i in range(2):
        app.runtime.bus.publish(canary_snap(service(at=NOW + i), seq=20 + i))
        await pilot.pause()


async def test_auto_rollback_countdown_is_shown_and_a_key_cancels_it(tmp_path):
    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("3")
        app.runtime.bus.publish(canary_snap(service(at=NOW - 5), seq=19))
        await pilot.pause()
        assert "auto-rollback: verdict fail 1/2" in summary_text(app)
        assert not isinstance(app.screen, CountdownScreen)
        await fail_twice(pilot, app)  # the second failing evaluation starts it
        assert isinstance(app.screen, CountdownScreen)
        clock.now += 4

        def countdown() -> str:
            return str(app.screen.query_one("#countdown", Static).render())

        await wait_for(pilot, lambda: "in 26s" in countdown())  # the next tick redraws the time left
        assert countdown() == "AUTO-ROLLBACK of checkout in 26s: press any key to cancel"
        assert "Evidence: verdict FAIL" in str(app.screen.query_one("#countdown-evidence", Static).render())
        await pilot.press("q")  # any key: cancels, and does not quit
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, CountdownScreen)
        clock.now += 60
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        assert ctl.sent == []
        [entry] = audit(tmp_path)  # nothing sent, but who said no, when, on what evidence is kept
        assert (entry["event"], entry["automatic"], entry["action"]["kind"]) == (
            "cancelled",
            False,
            "rollout.rollback",
        )
        assert entry["message"] == "cancelled by a key press with 26s of 30s left: nothing was sent"
        assert entry["action"]["params"]["evidence"]["verdict"] == "fail"
        assert "cancelled by a key press" in summary_text(app)
        assert any("cancelled by a key press" in n.message for n in app._notifications)


async def test_auto_rollback_fires_when_not_cancelled_audited_as_automatic(tmp_path):
    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await fail_twice(pilot, app)
        assert isinstance(app.screen, CountdownScreen)
        clock.now += 29
        await pilot.pause(0.3)
        assert ctl.sent == []  # not before the countdown has run out
        clock.now += 1.5
        await wait_for(pilot, lambda: len(ctl.sent) == 1)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, CountdownScreen)
        entries = audit(tmp_path)
        assert [e["event"] for e in entries] == ["intent", "result"]
        assert all(e["automatic"] for e in entries)
        assert entries[0]["action"]["params"]["evidence"]["reason"].startswith("canary 5xx ratio 2%")
        assert "AUTOMATIC rollback" in entries[0]["action"]["description"]
        assert any(
            n.message == "AUTOMATIC rollback of checkout: canary weight 0, all traffic to stable"
            for n in app._notifications
        )
        clock.now += 100
        await pilot.pause(0.3)
        assert len(ctl.sent) == 1  # once


async def test_auto_rollback_countdown_stops_when_the_verdict_recovers(tmp_path):
    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await fail_twice(pilot, app)
        assert isinstance(app.screen, CountdownScreen)
        app.runtime.bus.publish(canary_snap(service(verdict="pass", at=NOW + 10), seq=30))
        await pilot.pause()
        assert not isinstance(app.screen, CountdownScreen)
        clock.now += 60
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        assert ctl.sent == []
        [entry] = audit(tmp_path)  # ended by itself: audited as automatic
        assert (entry["event"], entry["automatic"]) == ("cancelled", True)
        assert (
            entry["message"]
            == "countdown stopped: the verdict recovered to pass with 30s of 30s left: nothing was sent"
        )
        assert any("recovered to pass" in n.message for n in app._notifications)


async def test_confirmation_fits_80x24_with_plan_lines_and_the_input(tmp_path):
    ctl = FakeController()
    app = rollout_app(tmp_path, ctl)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(canary_snap(service()))
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()
        text = screen_text(app)
        # The plan keeps its lines (a newline is not shown as \x0a) ...
        assert "\\x0a" not in text
        assert any(
            line.strip(" █│").strip() == "set server be_app/canary weight 0" for line in text.splitlines()
        )
        # ... and the input to type the service name is on screen, not pushed off it.
        assert "Type checkout to confirm:" in text
        assert app.screen.query_one(Input).region.bottom <= 24
        await pilot.press(*"checkout", "enter")
        await app.workers.wait_for_complete()
        assert len(ctl.sent) == 1


async def test_rollout_shown_without_a_canary_evaluation(tmp_path):
    from app_support import snap

    from ebpftop.core.model import Health, HealthState

    app = rollout_app(tmp_path, FakeController())
    async with app.run_test(size=(160, 48)) as pilot:
        app.runtime.bus.publish(
            snap(
                "canary",
                None,
                Health(HealthState.OFF, "Prometheus not configured", "set --prometheus-url", None, 1),
            )
        )
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        pane = app.query_one("#pane-canary")
        # The screen follows the store in the next frame slot (tui/flush.py), not at once.
        await wait_for(pilot, lambda: not pane.has_class("-nodata"))
        text = summary_text(app)
        assert "checkout  (no canary evaluation of this service)" in text
        assert "rollout fake  phase Progressing" in text and "R: roll back" in text
        assert "Prometheus not configured" in str(pane.query_one(".health", Static).render())


# --- on the lab (root): the "done when" through the dashboard -----------------


@pytest.fixture(scope="module")
def lab():
    import shutil

    from conftest import need, need_root

    from ebpftop.lab import manager
    from ebpftop.lab.layout import LabConfig

    need_root()
    for binary in ("haproxy", "prometheus", "ip"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    cfg = LabConfig(name="tu", subnet="198.18.222.0/24", prometheus_port=19222, rate=40, weights=(80, 20))
    try:
        manager.up(cfg)
        ep = manager.endpoints(cfg)
        assert ep is not None
        yield cfg, ep
    finally:
        manager.down(cfg)


@pytest.mark.integration
async def test_lab_degraded_canary_R_moves_all_traffic_to_stable(tmp_path, lab):
    from ebpftop.cli.main import main as cli_main
    from ebpftop.collectors.canary.collector import CanaryCollector
    from ebpftop.collectors.rollout.runtime_api import RuntimeAPI
    from ebpftop.core.audit import verify
    from ebpftop.lab import manager

    cfg, ep = lab
    s = manager.wire_settings(
        settings(
            tmp_path, canary_window="15s", canary_interval=1.0, canary_timeout=10.0, rollout_interval=0.5
        ),
        ep,
    )
    api = RuntimeAPI(ep.haproxy_socket)
    app = EbpftopApp(Runtime(s, collectors=[CanaryCollector(s), RolloutCollector(s)]))
    assert cli_main(["lab", "inject", "--instance", cfg.name, "canary", "errors=5%"]) == 0
    try:
        async with app.run_test(size=(160, 48), notifications=True) as pilot:
            await pilot.press("3")

            def verdict() -> str:
                snap = app.runtime.store.latest("canary")
                services = getattr(snap.data, "services", ()) if snap is not None and snap.data else ()
                return services[0].verdict.value if services else ""

            await wait_for(
                pilot,
                lambda: verdict() == "fail",
                tries=1800,  # bounded: 90 s
                detail=lambda: summary_text(app),
            )
            # The screen shows it in the next frame (one per refresh interval).
            await wait_for(
                pilot,
                lambda: "20% canary" in summary_text(app) and "✖ FAIL" in summary_text(app),
                tries=200,
                detail=lambda: summary_text(app),
            )
            await pilot.press("R")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            shown = str(app.screen.query_one("#confirm-description", Static).render())
            assert f"set server {ep.haproxy_backend}/{ep.haproxy_servers['canary']} weight 0" in shown
            assert "Evidence: verdict FAIL" in shown
            await pilot.press(*"checkout", "enter")  # the lab's service, by its own name
            await app.workers.wait_for_complete()
            assert api.weights(ep.haproxy_backend)[ep.haproxy_servers["canary"]] == 0
            await wait_for(
                pilot,
                lambda: (
                    "stable 100%" in summary_text(app)
                    and "0% canary" in summary_text(app)
                    and "20% canary" not in summary_text(app)
                ),
                tries=200,
                detail=lambda: summary_text(app),
            )
            assert any(
                n.message.startswith("rollback of checkout:") and n.severity == "information"
                for n in app._notifications
            )
    finally:
        cli_main(["lab", "inject", "--instance", cfg.name, "canary", "reset"])
        api.set_weight(ep.haproxy_backend, ep.haproxy_servers["canary"], 20)
    events = [e["event"] for e in audit(tmp_path)]
    assert events == ["intent", "result"]
    assert verify(tmp_path / "audit.jsonl", tmp_path / "audit.key").ok


async def test_countdown_ending_under_another_screen_leaves_that_screen_alone(tmp_path):
    from ebpftop.tui.screens.help import HelpScreen

    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await fail_twice(pilot, app)
        countdown = app.screen
        assert isinstance(countdown, CountdownScreen)
        await app.push_screen(HelpScreen())  # something else opened on top (a worker's dialog, say)
        app.runtime.bus.publish(canary_snap(service(verdict="pass", at=NOW + 10), seq=30))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)  # not popped in the countdown's place
        app.pop_screen()
        await pilot.pause()
        assert not isinstance(app.screen, (CountdownScreen, HelpScreen))
        assert not countdown.is_attached


async def test_countdown_shows_in_lines_exactly_what_R_would_send_and_the_pane_says_it_once(tmp_path):
    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await pilot.press("3")
        await fail_twice(pilot, app)
        assert isinstance(app.screen, CountdownScreen)
        shown = str(app.screen.query_one("#countdown-evidence", Static).render())
        assert "\\x0a" not in shown  # newlines are lines, not escapes
        lines = shown.splitlines()
        # The same words as the `R` dialog: where, then each request as it is sent.
        assert "Will send to fake at fake://lb:9999:" in lines
        assert lines[lines.index("runtime-api fake://lb:9999") + 1] == "  set server be_app/canary weight 0"
        assert any(line.startswith("Evidence: verdict FAIL: canary 5xx ratio 2%") for line in lines)
        clock.now += 31
        await wait_for(pilot, lambda: len(ctl.sent) == 1)
        await app.workers.wait_for_complete()
        await wait_for(
            pilot,
            lambda: "auto-rollback: canary weight 0, all traffic to stable" in summary_text(app),
            detail=lambda: summary_text(app),
        )
        assert "auto-rollback: auto-rollback" not in summary_text(app)


async def test_a_cancelled_countdown_says_auto_rollback_once(tmp_path):
    ctl, clock = FakeController(), Clock()
    app = auto_app(tmp_path, ctl, clock)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await pilot.press("3")
        await fail_twice(pilot, app)
        await pilot.press("x")
        await pilot.pause()
        text = summary_text(app)
        assert "auto-rollback: cancelled by a key press; it stays off until the verdict leaves fail" in text
        assert "auto-rollback: auto-rollback" not in text
        assert any(
            n.message == "cancelled by a key press; it stays off until the verdict leaves fail"
            and n.title == "auto-rollback"
            for n in app._notifications
        )


async def test_help_lists_U_and_a_controller_without_undo_says_so(tmp_path):
    ctl = FakeController()
    app = rollout_app(tmp_path, ctl)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        line = next(ln for ln in screen_text(app).splitlines() if "undo ebpftop's last rollback" in ln)
        assert " U " in line
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        await pilot.press("U")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and audit(tmp_path) == []
        assert any(
            n.message
            == "undo of the rollback of checkout: fake at fake://lb:9999: undoing a rollback is not supported"
            and n.severity == "error"
            for n in app._notifications
        ), [n.message for n in app._notifications]
