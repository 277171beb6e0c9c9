"""RolloutControl, the seam the dashboard uses: state and evidence from the store, the
rollback key through the gate, auto-rollback fed by canary snapshots and a timer."""

from __future__ import annotations

import json

from test_rollout_auto import Clock, FakeController, evaluation

from ebpftop.actions.auto_rollback import Phase
from ebpftop.actions.rollout_control import RolloutControl
from ebpftop.collectors.canary.data import CanaryData
from ebpftop.collectors.rollout.model import RolloutData, RolloutState
from ebpftop.core.audit import AuditLog, read_lines
from ebpftop.core.gate import Gate
from ebpftop.core.model import Health, Snapshot
from ebpftop.core.settings import Settings
from ebpftop.core.store import Store

SETTINGS = Settings(
    rollout_service="checkout", auto_rollback=True, auto_rollback_evaluations=2, auto_rollback_countdown=10.0
)


def make(tmp_path, *, read_only=False, settings=SETTINGS):
    store, clock, ctl = Store(), Clock(), FakeController()
    gate = Gate(AuditLog(tmp_path / "a.jsonl", tmp_path / "a.key"), read_only=read_only)
    return RolloutControl(settings, store, gate, controller=ctl, clock=clock), store, clock, ctl


def canary_snap(seq: int, verdict: str) -> Snapshot:
    return Snapshot("canary", seq, 0.0, Health(), CanaryData("http://prom", (evaluation(verdict),)))


async def test_rollback_key_uses_store_state_and_evidence(tmp_path):
    control, store, _, ctl = make(tmp_path)
    store.put(
        Snapshot(
            "rollout",
            1,
            0.0,
            Health(),
            RolloutData((RolloutState("checkout", "fake", "x", canary_weight=10.0),)),
        )
    )
    store.put(canary_snap(1, "fail"))
    assert control.state("checkout").canary_weight == 10.0
    assert control.evidence("checkout").verdict.value == "fail"
    assert control.can_rollback("checkout") == (True, "")
    shown = []

    async def confirm(action):
        shown.append(action)
        return True

    result = await control.rollback("checkout", confirm)
    assert result.ok and len(ctl.sent) == 1
    assert shown[0].confirm_text == "checkout" and "verdict FAIL" in shown[0].description


async def test_disabled_states_say_why(tmp_path):
    control, store, _, ctl = make(tmp_path)
    store.put(
        Snapshot(
            "rollout",
            1,
            0.0,
            Health(),
            RolloutData(
                (
                    RolloutState(
                        "checkout", "fake", "x", can_rollback=False, rollback_reason="not allowed to patch"
                    ),
                )
            ),
        )
    )
    assert control.can_rollback("checkout") == (False, "not allowed to patch")
    result = await control.rollback("checkout", lambda a: None)
    assert not result.ok and "not allowed to patch" in result.message and ctl.sent == []
    assert control.can_rollback("payments")[0] is False
    kiosk, *_ = make(tmp_path / "k", read_only=True)
    assert kiosk.can_rollback("checkout") == (False, "refused: read-only (kiosk) mode, no action can run")
    none = RolloutControl(Settings(), Store(), control.gate)
    assert none.can_rollback("default")[1].startswith("no rollout controller configured")


async def test_auto_rollback_from_canary_snapshots_and_a_timer(tmp_path):
    control, _, clock, ctl = make(tmp_path)
    assert control.observe(canary_snap(1, "fail")).phase is Phase.WATCHING
    assert control.observe(canary_snap(2, "fail")).phase is Phase.COUNTDOWN
    assert await control.tick() is None
    clock.now += 10
    result = await control.tick()
    assert result.ok and len(ctl.sent) == 1
    entries = [json.loads(line) for line in read_lines(tmp_path / "a.jsonl")[0]]
    assert [(e["event"], e["automatic"]) for e in entries] == [("intent", True), ("result", True)]


async def test_a_key_cancels_the_countdown(tmp_path):
    control, _, clock, ctl = make(tmp_path)
    control.observe(canary_snap(1, "fail"))
    control.observe(canary_snap(2, "fail"))
    assert control.cancel_auto()
    clock.now += 60
    assert await control.tick() is None and ctl.sent == []
    assert control.auto.status().phase is Phase.CANCELLED
