"""Auto-rollback logic with a fake clock and a fake controller, through a real gate and
audit log: the countdown starts after the configured failing evaluations, fires once
when it runs out (audited as automatic, with its evidence), and a cancel stops it."""

from __future__ import annotations

import json

import pytest

from ebpftop.actions.auto_rollback import AutoRollback, Phase
from ebpftop.actions.rollback import RollbackUnavailable, evidence_text, rollback_action, run_rollback
from ebpftop.collectors.canary.data import DriftTest, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.verdict import MetricVerdict, Verdict
from ebpftop.collectors.rollout.base import Conflict, Controller
from ebpftop.collectors.rollout.model import Plan, Request, RolloutState
from ebpftop.core.audit import AuditLog, read_lines
from ebpftop.core.gate import Gate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeController(Controller):
    kind = "fake"

    def __init__(self) -> None:
        super().__init__("checkout")
        self.sent: list[Plan] = []

    @property
    def endpoint(self) -> str:
        return "fake://controller"

    async def state(self) -> RolloutState:
        return RolloutState("checkout", self.kind, self.endpoint, canary_weight=10.0, stable_weight=90.0)

    def plan_rollback(self, state=None) -> Plan:
        return Plan(
            "rollback", self.kind, self.endpoint, "canary to 0", (Request("POST", "fake://x", '{"w":0}'),)
        )

    async def rollback(self, plan: Plan) -> str:
        self.sent.append(plan)
        return "rolled back"


_t = iter(range(1, 10**6))


def evaluation(verdict: str, *, stale: bool = False, name: str = "checkout") -> ServiceCanary:
    v = Verdict(verdict)
    metric = MetricVerdict(
        "error_ratio", v, 0.05, 0.005, "ratio", 3, "error ratio 5.00% > 0.50% for 3/3 evaluations"
    )
    return ServiceCanary(
        name=name,
        verdict=v,
        reason=metric.reason if v is Verdict.FAIL else verdict,
        metrics=(metric,),
        canary=VariantMetrics("canary", p99_s=0.2, error_ratio=0.05, rps=4.0, requests=240),
        stable=VariantMetrics("stable", p99_s=0.1, error_ratio=0.0, rps=36.0, requests=2160),
        drift=DriftTest("chi-square"),
        evaluated_at=float(next(_t)),
        stale=stale,
    )


@pytest.fixture
def setup(tmp_path):
    clock = Clock()
    auto = AutoRollback("checkout", enabled=True, evaluations=3, countdown=30.0, clock=clock)
    gate = Gate(AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.key"), read_only=False)
    return auto, clock, gate, FakeController(), tmp_path / "audit.jsonl"


async def test_countdown_starts_after_the_configured_failures_and_fires_once(setup):
    auto, clock, gate, ctl, log = setup
    for i in (1, 2):
        assert auto.observe(evaluation("fail")).phase is Phase.WATCHING
        assert auto.status().message == f"verdict fail {i}/3"
    status = auto.observe(evaluation("fail"))
    assert status.phase is Phase.COUNTDOWN and status.remaining_s == 30.0
    clock.now += 29.5
    assert auto.status().remaining_s == pytest.approx(0.5)
    assert await auto.fire_if_due(gate, ctl) is None and ctl.sent == []
    clock.now += 0.5
    result = await auto.fire_if_due(gate, ctl)
    assert result is not None and result.ok and len(ctl.sent) == 1
    assert auto.phase is Phase.FIRED
    assert await auto.fire_if_due(gate, ctl) is None and len(ctl.sent) == 1  # never twice
    intent, res = (json.loads(line) for line in read_lines(log)[0])
    assert (intent["event"], intent["automatic"], res["event"], res["ok"]) == ("intent", True, "result", True)
    evidence = intent["action"]["params"]["evidence"]
    assert evidence["verdict"] == "fail" and evidence["canary"]["error_ratio"] == 0.05
    assert "AUTOMATIC rollback" in intent["action"]["description"]


async def test_cancel_stops_the_countdown_and_it_stays_off_until_the_verdict_leaves_fail(setup):
    auto, clock, gate, ctl, _ = setup
    for _ in range(3):
        auto.observe(evaluation("fail"))
    clock.now += 10
    assert auto.cancel()
    assert auto.phase is Phase.CANCELLED and auto.status().remaining_s is None
    clock.now += 100
    assert await auto.fire_if_due(gate, ctl) is None and ctl.sent == []
    for _ in range(5):  # still failing: the operator said no to this failure
        auto.observe(evaluation("fail"))
    assert auto.phase is Phase.CANCELLED
    auto.observe(evaluation("pass"))
    assert auto.phase is Phase.WATCHING and "re-armed" in auto.message
    for _ in range(3):
        auto.observe(evaluation("fail"))
    assert auto.phase is Phase.COUNTDOWN
    assert not AutoRollback("checkout", enabled=True).cancel()  # nothing to cancel


async def test_recovery_during_the_countdown_stops_it(setup):
    auto, clock, gate, ctl, _ = setup
    for _ in range(3):
        auto.observe(evaluation("fail"))
    auto.observe(evaluation("warn"))
    assert auto.phase is Phase.WATCHING and "recovered to warn" in auto.message
    clock.now += 60
    assert await auto.fire_if_due(gate, ctl) is None and ctl.sent == []


def test_no_data_stale_repeated_and_other_services_neither_count_nor_reset(setup):
    auto, *_ = setup
    auto.observe(evaluation("fail"))
    same = evaluation("fail")
    auto.observe(same)
    auto.observe(same)  # the same evaluation published twice counts once
    auto.observe(evaluation("no_data"))
    auto.observe(evaluation("fail", stale=True))
    auto.observe(evaluation("fail", name="payments"))
    assert (auto.fails, auto.phase) == (2, Phase.WATCHING)
    auto.observe(evaluation("pass"))
    assert auto.fails == 0


async def test_off_unless_enabled(setup):
    _, clock, gate, ctl, _ = setup
    auto = AutoRollback("checkout", enabled=False, evaluations=1, countdown=0, clock=clock)
    for _ in range(5):
        auto.observe(evaluation("fail"))
    assert auto.phase is Phase.OFF and await auto.fire_if_due(gate, ctl) is None
    assert "--auto-rollback" in auto.message


async def test_read_only_gate_refuses_the_automatic_rollback_too(setup, tmp_path):
    auto, clock, _, ctl, _ = setup
    kiosk = Gate(AuditLog(tmp_path / "k.jsonl", tmp_path / "k.key"), read_only=True)
    for _ in range(3):
        auto.observe(evaluation("fail"))
    clock.now += 30
    result = await auto.fire_if_due(kiosk, ctl)
    assert result.refused and ctl.sent == []
    assert [json.loads(line)["event"] for line in read_lines(tmp_path / "k.jsonl")[0]] == ["refused"]


def test_confirmation_shows_evidence_plan_and_asks_for_the_service_name():
    ctl = FakeController()
    action, _ = rollback_action(ctl, "checkout", evaluation("fail"))
    assert action.confirm_text == "checkout" and action.dangerous and action.kind == "rollout.rollback"
    assert "Will send to fake at fake://controller" in action.description
    assert 'POST fake://x\n  {"w":0}' in action.description
    assert "verdict FAIL: error ratio 5.00% > 0.50%" in action.description
    assert "canary p99 0.2s, errors 5.00%" in evidence_text(evaluation("fail"))
    assert "Evidence: none" in evidence_text(None)
    with pytest.raises(RollbackUnavailable, match="configured: 'checkout'"):
        rollback_action(ctl, "payments", None)


# --- a countdown that ends without a rollback is audited too (issue 16, item 9) -------------


def entries(path) -> list[dict]:
    return [json.loads(line) for line in read_lines(path)[0]] if path.exists() else []


async def test_a_cancelled_countdown_is_audited_with_its_evidence_and_time_left(setup):
    auto, clock, gate, ctl, log = setup
    assert not auto.cancel() and await auto.audit_stops(gate) == ""  # no countdown: nothing to say
    for _ in range(3):
        auto.observe(evaluation("fail"))
    clock.now += 12
    assert auto.cancel("cancelled by a key press")
    assert auto.phase is Phase.CANCELLED  # at once, before anything is written
    assert entries(log) == []
    assert await auto.audit_stops(gate) == ""
    [entry] = entries(log)
    assert (entry["event"], entry["automatic"], entry["ok"]) == ("cancelled", False, False)
    assert entry["message"] == "cancelled by a key press with 18s of 30s left: nothing was sent"
    action = entry["action"]
    assert (action["kind"], action["target"]) == ("rollout.rollback", "checkout")
    assert action["params"]["remaining_s"] == 18.0 and action["params"]["countdown_s"] == 30.0
    assert action["params"]["evidence"]["verdict"] == "fail"
    assert action["description"].startswith(
        "AUTOMATIC rollback of checkout not run: cancelled by a key press"
    )
    assert "Evidence: verdict FAIL" in action["description"]
    assert await auto.audit_stops(gate) == "" and len(entries(log)) == 1  # written once
    clock.now += 100
    assert await auto.fire_if_due(gate, ctl) is None and ctl.sent == []


async def test_a_countdown_stopped_by_recovery_is_audited_as_automatic(setup):
    auto, clock, gate, _, log = setup
    for _ in range(3):
        auto.observe(evaluation("fail"))
    clock.now += 5
    auto.observe(evaluation("pass"))
    await auto.audit_stops(gate)
    [entry] = entries(log)
    assert (entry["event"], entry["automatic"]) == ("cancelled", True)
    assert (
        entry["message"]
        == "countdown stopped: the verdict recovered to pass with 25s of 30s left: nothing was sent"
    )


async def test_a_rollback_that_ran_leaves_no_cancelled_entry(setup):
    auto, clock, gate, ctl, log = setup
    for _ in range(3):
        auto.observe(evaluation("fail"))
    clock.now += 30
    assert (await auto.fire_if_due(gate, ctl)).ok
    auto.observe(evaluation("pass"))  # re-armed after the rollback: no countdown was stopped
    await auto.audit_stops(gate)
    assert [e["event"] for e in entries(log)] == ["intent", "result"]


async def test_an_unwritable_audit_log_does_not_undo_the_cancel_and_says_so(setup, tmp_path):
    auto, clock, _, ctl, _ = setup
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    gate = Gate(AuditLog(blocked / "audit.jsonl", tmp_path / "k.key"), read_only=False)
    for _ in range(3):
        auto.observe(evaluation("fail"))
    assert auto.cancel()
    note = await auto.audit_stops(gate)
    assert "not recorded: the audit log could not be written" in note
    assert auto.phase is Phase.CANCELLED
    clock.now += 100
    assert await auto.fire_if_due(gate, ctl) is None and ctl.sent == []


class ConflictOnce(FakeController):
    """Answers the first rollback with a Conflict (the rollout moved), then rolls back."""

    async def rollback(self, plan: Plan) -> str:
        if not self.sent:
            self.sent.append(plan)
            moved = RolloutState("checkout", self.kind, self.endpoint, step=3, canary_weight=30.0)
            raise Conflict("the rollout changed", moved, ["step: 2 -> 3"])
        return await super().rollback(plan)


@pytest.mark.parametrize("automatic", [False, True])
async def test_a_conflict_is_shown_and_confirmed_again_unless_automatic(tmp_path, automatic):
    gate = Gate(AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.key"), read_only=False)
    ctl, asked = ConflictOnce(), []

    async def confirm(action) -> bool:
        asked.append(action.description)
        return True

    result = await run_rollback(gate, ctl, "checkout", evaluation("fail"), confirm, automatic=automatic)
    if automatic:  # not retried: the operator was never asked, a moving rollout needs their eyes
        assert not result.ok and "the rollout changed" in result.message
        assert asked == [] and len(ctl.sent) == 1
    else:
        assert result.ok and len(ctl.sent) == 2
        assert len(asked) == 2 and "THE ROLLOUT CHANGED" not in asked[0]
        assert "THE ROLLOUT CHANGED" in asked[1] and "step: 2 -> 3" in asked[1]
