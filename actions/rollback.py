"""Rollback as a gate action: what the confirmation shows, what the audit log keeps.

`rollback_action` builds the Action (evidence, exactly what will be sent to which
controller, the service name to type) and the `perform` that sends that very plan.
`run_rollback` is what the TUI's `R`, the `rollback` verb and auto-rollback call: it
runs the action through the gate and, when the controller reports that the rollout
changed under us (Conflict, HTTP 409), shows what changed and asks again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from ebpftop.collectors.canary.data import ServiceCanary
from ebpftop.collectors.rollout.base import Conflict, Controller
from ebpftop.collectors.rollout.model import Plan, RolloutState
from ebpftop.core.gate import Action, ActionResult, Confirm, Gate
from ebpftop.core.untrusted import clean

from .marker import ActionInputError

KIND = "rollout.rollback"
MAX_ROUNDS = 3
MAX_EXEMPLARS = 3


class RollbackUnavailable(ActionInputError):
    """Rollback cannot be offered (not permitted, wrong service); the message says why."""


def evidence_record(evidence: ServiceCanary | None) -> dict[str, Any] | None:
    """The canary evidence as JSON for the audit log."""
    if evidence is None:
        return None
    return _evidence_dict(evidence)


def _evidence_dict(evidence: ServiceCanary) -> dict[str, Any]:
    return {
        "service": evidence.name,
        "verdict": getattr(evidence.verdict, "value", str(evidence.verdict)),
        "reason": evidence.reason,
        "evaluated_at": evidence.evaluated_at,
        "stale": evidence.stale,
        "window": evidence.window,
        "metrics": [
            {
                "name": m.name,
                "verdict": getattr(m.verdict, "value", str(m.verdict)),
                "value": m.value,
                "threshold": m.threshold,
                "unit": m.unit,
                "reason": m.reason,
            }
            for m in evidence.metrics
        ],
        "canary": {
            "p99_s": evidence.canary.p99_s,
            "error_ratio": evidence.canary.error_ratio,
            "rps": evidence.canary.rps,
            "requests": evidence.canary.requests,
        },
        "stable": {
            "p99_s": evidence.stable.p99_s,
            "error_ratio": evidence.stable.error_ratio,
            "rps": evidence.stable.rps,
            "requests": evidence.stable.requests,
        },
        "slow_trace_ids": [e.trace_id for e in evidence.exemplars[:MAX_EXEMPLARS]],
    }


def evidence_text(evidence: ServiceCanary | None) -> str:
    """Evidence lines for the confirmation: verdict, its reason, the numbers."""
    if evidence is None:
        return "Evidence: none (no canary evaluation for this service)"
    rec = _evidence_dict(evidence)
    # Values from outside (reasons quoting labels, trace ids from exemplars) are cleaned
    # one by one, so none can add a line of its own to the confirmation.
    lines = [
        f"Evidence: verdict {clean(rec['verdict']).upper()}: {clean(rec['reason'])}"
        + (" (stale)" if rec["stale"] else "")
    ]
    for m in rec["metrics"]:
        lines.append(f"  {clean(m['name'])}: {clean(m['verdict'])} - {clean(m['reason'])}")
    c, s = rec["canary"], rec["stable"]
    lines.append(
        f"  canary p99 {_num(c['p99_s'], 's')}, errors {_pct(c['error_ratio'])}, {_num(c['rps'], ' req/s')}; "
        f"stable p99 {_num(s['p99_s'], 's')}, errors {_pct(s['error_ratio'])}, {_num(s['rps'], ' req/s')}"
    )
    if rec["slow_trace_ids"]:
        lines.append("  slow trace ids: " + ", ".join(clean(t) for t in rec["slow_trace_ids"]))
    return "\n".join(lines)


def _num(v: float | None, unit: str) -> str:
    return "no data" if v is None else f"{v:.3g}{unit}"


def _pct(v: float | None) -> str:
    return "no data" if v is None else f"{100 * v:.2f}%"


def plan_record(plan: Plan) -> dict[str, Any]:
    return asdict(plan)


def plan_action(
    kind: str,
    title: str,
    controller: Controller,
    service: str,
    plan: Plan,
    evidence: ServiceCanary | None,
    headline: list[str],
    **extra: Any,
) -> Action:
    """A rollout action as its confirmation shows it: `headline`, where it is sent and
    each request, then the evidence; confirmed by typing the service name."""
    # The plan's own first line repeats the controller and endpoint: say them once.
    lines = [*headline, f"Will send to {controller.kind} at {clean(controller.endpoint)}:", *plan.steps()]
    return Action(
        kind=kind,
        title=title,
        description="\n".join([*lines, evidence_text(evidence)]),
        target=service,
        params={
            "service": service,
            "controller": controller.kind,
            "endpoint": controller.endpoint,
            "plan": plan_record(plan),
            "evidence": evidence_record(evidence),
            **extra,
        },
        dangerous=True,
        confirm_text=service,
    )


def rollback_action(
    controller: Controller,
    service: str,
    evidence: ServiceCanary | None = None,
    *,
    state: RolloutState | None = None,
    changes: list[str] | None = None,
    automatic: bool = False,
) -> tuple[Action, Callable[[], Awaitable[str]]]:
    """The rollback Action and its perform. Raises RollbackUnavailable when it cannot be offered."""
    if service != controller.service:
        raise RollbackUnavailable(
            f"no rollout controller for service {service!r} (configured: {controller.service!r})"
        )
    if state is not None and not state.can_rollback:
        raise RollbackUnavailable(f"rollback of {service} is disabled: {state.rollback_reason}")
    plan = controller.plan_rollback(state)
    parts = []
    if changes:
        parts.append(
            "THE ROLLOUT CHANGED since you confirmed; nothing was applied. What changed:\n  "
            + "\n  ".join(clean(c) for c in changes)
        )
    if automatic:
        parts.append("AUTOMATIC rollback: the canary verdict stayed fail and the countdown ran out.")
    parts.append(f"Roll back {clean(service)}: all traffic to stable ({clean(plan.summary)}).")
    action = plan_action(
        KIND,
        f"Roll back {service}",
        controller,
        service,
        plan,
        evidence,
        parts,
        **({"changed": list(changes)} if changes else {}),
    )

    async def perform() -> str:
        return await controller.rollback(plan)

    return action, perform


def _noting_conflict(
    perform: Callable[[], Awaitable[str]], conflict: list[Conflict]
) -> Callable[[], Awaitable[str]]:
    """`perform`, appending a Conflict it raises to `conflict` (the gate reports it as a failure)."""

    async def watched() -> str:
        try:
            return await perform()
        except Conflict as exc:
            conflict.append(exc)
            raise

    return watched


async def run_rollback(
    gate: Gate,
    controller: Controller,
    service: str,
    evidence: ServiceCanary | None,
    confirm: Confirm,
    *,
    state: RolloutState | None = None,
    automatic: bool = False,
    max_rounds: int = MAX_ROUNDS,
) -> ActionResult:
    """Rollback through the gate; on Conflict, show what changed and confirm again.

    An automatic rollback is not retried after a conflict: the operator was not asked
    the first time, and a rollout that is moving deserves their eyes. Raises
    RollbackUnavailable (before anything is asked or written) when it cannot be offered.
    """
    changes: list[str] | None = None
    result = ActionResult(False, "not run")
    for _ in range(max_rounds):
        action, perform = rollback_action(
            controller, service, evidence, state=state, changes=changes, automatic=automatic
        )
        conflict: list[Conflict] = []
        result = await gate.execute(action, _noting_conflict(perform, conflict), confirm, automatic=automatic)
        if not conflict or automatic:
            return result
        state, changes = conflict[0].state, conflict[0].changes
        if not state.can_rollback:
            return result
    return result
