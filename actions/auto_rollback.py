"""Auto-rollback: when the canary verdict stays fail for `evaluations` evaluations in a
row, start a cancellable countdown; when it runs out, roll back through the gate as an
automatic action with the evidence. Pure logic with an injectable clock: the TUI feeds
it evaluations (`observe`), shows `status()`, calls `cancel()` and `fire_if_due()`, and
runs `audit_stops(gate)` so a countdown that ends without a rollback is audited too.
The counting rules are in collectors/canary/README.md ("Auto-rollback").
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ebpftop.collectors.rollout.base import Controller
from ebpftop.collectors.rollout.model import RolloutState
from ebpftop.core.gate import Action, ActionResult, Gate

from .rollback import KIND, RollbackUnavailable, evidence_record, evidence_text, run_rollback


class Phase(enum.StrEnum):
    OFF = "off"  # not enabled
    WATCHING = "watching"
    COUNTDOWN = "countdown"
    CANCELLED = "cancelled"  # held until the verdict leaves fail
    FIRED = "fired"  # rollback ran (see last_result); held until the verdict leaves fail


@dataclass(frozen=True)
class AutoStatus:
    phase: Phase
    fails: int  # consecutive failing evaluations seen
    needed: int
    remaining_s: float | None  # during the countdown
    message: str


def _verdict(evidence: Any) -> str:
    v = getattr(evidence, "verdict", None)
    return str(getattr(v, "value", v))


async def _never(action: Action) -> bool:  # automatic actions are not confirmed
    return False


class AutoRollback:
    def __init__(
        self,
        service: str,
        *,
        enabled: bool,
        evaluations: int = 3,
        countdown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if evaluations < 1 or countdown < 0:
            raise ValueError("evaluations must be >= 1 and countdown >= 0")
        self.service = service
        self.enabled = enabled
        self.evaluations = evaluations
        self.countdown = countdown
        self._clock = clock
        self.phase = Phase.WATCHING if enabled else Phase.OFF
        self.fails = 0
        self.evidence: Any = None  # what started the countdown
        self.deadline: float | None = None
        self.message = "" if enabled else "auto-rollback is off (--auto-rollback turns it on)"
        self.last_result: ActionResult | None = None
        self._seen: float | None = None
        self._stops: list[tuple[Action, str, bool]] = []  # countdowns ended unrun, not yet audited

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> AutoRollback:
        return cls(
            settings.rollout_service,
            enabled=settings.auto_rollback,
            evaluations=settings.auto_rollback_evaluations,
            countdown=settings.auto_rollback_countdown,
            **kw,
        )

    def status(self) -> AutoStatus:
        return AutoStatus(self.phase, self.fails, self.evaluations, self.remaining(), self.message)

    def remaining(self) -> float | None:
        if self.phase is not Phase.COUNTDOWN or self.deadline is None:
            return None
        return max(0.0, self.deadline - self._clock())

    def observe(self, evidence: Any) -> AutoStatus:
        """One canary evaluation (a canary.data.ServiceCanary) of this service."""
        if (
            self.phase is Phase.OFF
            or evidence is None
            or getattr(evidence, "name", self.service) != self.service
        ):
            return self.status()
        at = getattr(evidence, "evaluated_at", None)
        if getattr(evidence, "stale", False) or (at is not None and at == self._seen):
            return self.status()
        self._seen = at
        verdict = _verdict(evidence)
        if verdict == "no_data":
            return self.status()
        if verdict != "fail":
            self.fails = 0
            if self.phase is Phase.COUNTDOWN:
                self.message = f"countdown stopped: the verdict recovered to {verdict}"
                self._stopped(self.message, automatic=True)
            elif self.phase in (Phase.CANCELLED, Phase.FIRED):
                self.message = f"re-armed: the verdict is {verdict}"
            self.phase, self.deadline = Phase.WATCHING, None
            return self.status()
        self.fails += 1
        if self.phase is Phase.WATCHING:
            self.message = f"verdict fail {min(self.fails, self.evaluations)}/{self.evaluations}"
            if self.fails >= self.evaluations:
                self.phase = Phase.COUNTDOWN
                self.deadline = self._clock() + self.countdown
                self.evidence = evidence
                self.message = f"rolling back {self.service} in {self.countdown:g}s unless cancelled"
        elif self.phase is Phase.COUNTDOWN:
            self.evidence = evidence  # the latest numbers go in the audit entry
        return self.status()

    def cancel(self, reason: str = "cancelled by a key press", *, automatic: bool = False) -> bool:
        """Stop a running countdown; False when there was none. `automatic`: nobody
        asked (it could not run), as opposed to the operator saying no."""
        if self.phase is not Phase.COUNTDOWN:
            return False
        self._stopped(reason, automatic=automatic)
        self.phase, self.deadline = Phase.CANCELLED, None
        # No "auto-rollback" in the messages: every place that shows one says it already.
        self.message = f"{reason}; it stays off until the verdict leaves fail"
        return True

    def _stopped(self, why: str, *, automatic: bool) -> None:
        """Keep, for the audit log, the rollback this countdown would have run. Called
        while the phase is still COUNTDOWN (for the time that was left)."""
        left = self.remaining()
        timing = "" if left is None else f" with {left:.0f}s of {self.countdown:g}s left"
        action = Action(
            kind=KIND,
            title=f"Roll back {self.service}",
            description=f"AUTOMATIC rollback of {self.service} not run: {why}{timing}.\n"
            + evidence_text(self.evidence),
            target=self.service,
            params={
                "service": self.service,
                "countdown_s": self.countdown,
                "remaining_s": None if left is None else round(left, 1),
                "evidence": evidence_record(self.evidence),
            },
            dangerous=True,
        )
        self._stops.append((action, f"{why}{timing}: nothing was sent", automatic))

    async def audit_stops(self, gate: Gate) -> str:
        """Write a "cancelled" entry for each countdown that ended without a rollback
        since the last call. Returns "" or why an entry could not be written."""
        notes = []
        while self._stops:
            action, message, automatic = self._stops.pop(0)
            notes.append(await gate.record_not_run(action, message, automatic=automatic))
        return next((note for note in notes if note), "")

    def due(self) -> bool:
        return self.phase is Phase.COUNTDOWN and self.deadline is not None and self._clock() >= self.deadline

    async def fire_if_due(
        self, gate: Gate, controller: Controller, state: RolloutState | None = None
    ) -> ActionResult | None:
        """Run the rollback when the countdown has run out; None when it has not."""
        if not self.due():
            return None
        self.phase, self.deadline = Phase.FIRED, None  # before any await: a second tick cannot fire twice
        try:
            result = await run_rollback(
                gate, controller, self.service, self.evidence, _never, state=state, automatic=True
            )
        except RollbackUnavailable as exc:
            result = ActionResult(False, f"not possible: {exc}")
        self.last_result = result
        self.message = result.message
        return result
