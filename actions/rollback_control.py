"""The dashboard's rollback controller: the `R` key's target and the auto-rollback
countdown, without Textual.

It feeds canary snapshots to `AutoRollback` and turns its transitions into calls on a
front end (`RollbackFrontEnd`: the TUI's countdown dialog, or a list in a test). No
countdown in read-only mode or a replay; one that ends without a rollback is audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

from ebpftop.collectors.rollout.base import Controller
from ebpftop.core.gate import ActionResult, Confirm
from ebpftop.core.model import Snapshot
from ebpftop.core.runtime import Runtime
from ebpftop.core.untrusted import clean

from .auto_rollback import AutoRollback, Phase
from .rollback import RollbackUnavailable, evidence_text, rollback_action
from .rollout_control import RolloutControl

ROLLOUT = "rollout"
Severity = Literal["information", "warning", "error"]


class RollbackFrontEnd(Protocol):
    def notify(
        self, message: str, *, title: str, severity: Severity = "information", timeout: float | None = None
    ) -> None: ...

    def show_countdown(self) -> None:
        """Show the countdown (with `countdown_text` and the evidence), call `tick`
        about four times a second until `hide_countdown`, ring the bell."""

    def hide_countdown(self) -> None: ...

    def changed(self) -> None:
        """`status_line` changed: redraw where it is shown."""

    def background(self, job: Coroutine[Any, Any, None], name: str) -> None:
        """Run `job` off the caller's stack (an audit write)."""

    def fire(self) -> None:
        """The countdown ran out: run `fire` as an automatic action (through the gate)."""


class RollbackControl:
    """The countdown's state and the rollback's target, for one dashboard."""

    def __init__(
        self, runtime: Runtime, *, read_only: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = runtime.settings
        self._collectors = runtime.collectors
        self.control = RolloutControl.from_runtime(runtime, clock=clock)
        if not read_only:
            self.auto = self.control.auto
        else:
            self.auto = AutoRollback(self.settings.rollout_service, enabled=False)
            if self.settings.auto_rollback:
                self.auto.message = "auto-rollback off: read-only"
        self.front: RollbackFrontEnd | None = None
        self._showing = False

    def attach(self, front: RollbackFrontEnd) -> None:
        self.front = front

    # --- where things are ------------------------------------------------------------

    def controller(self) -> Controller | None:
        return self.control.controller()

    def available(self) -> bool:
        """`R` is offered when a rollout controller is configured or running."""
        return bool(self.settings.rollout_controller) or any(c.name == ROLLOUT for c in self._collectors)

    def status_line(self) -> str:
        """For the canary pane: empty when auto-rollback is off and was never asked for."""
        phase = self.auto.phase
        if phase is Phase.OFF:
            return clean(self.auto.message, 100) if self.settings.auto_rollback else ""
        if phase is Phase.COUNTDOWN:
            return self.countdown_text()
        return "auto-rollback: " + clean(self.auto.message or "armed", 200)

    def countdown_text(self) -> str:
        left = self.auto.remaining()
        secs = "now" if left is None or left <= 0 else f"in {left:.0f}s"
        return f"AUTO-ROLLBACK of {clean(self.auto.service, 60)} {secs}: press any key to cancel"

    def evidence(self) -> Any:
        """What the running countdown acts on (canary.data.ServiceCanary) or None."""
        return self.auto.evidence

    def countdown_plan(self) -> str:
        """What the countdown will run, in the words of `R`'s confirmation: exactly what
        is sent to which controller, then the evidence (lines, each value cleaned)."""
        controller = self.controller()
        if controller is None:
            return "no rollout controller is running: nothing can be sent\n" + evidence_text(self.evidence())
        service = self.auto.service
        try:
            action, _perform = rollback_action(
                controller, service, self.evidence(), state=self.control.state(service), automatic=True
            )
        except RollbackUnavailable as exc:
            return f"rollback unavailable: {clean(exc, 300)}\n" + evidence_text(self.evidence())
        return action.description

    # --- R ---------------------------------------------------------------------------

    def target(self) -> tuple[str, str]:
        """(service, why not): the service `R` rolls back, and "" when it may."""
        controller = self.controller()
        service = controller.service if controller is not None else self.settings.rollout_service
        enabled, why = self.control.can_rollback(service)
        return service, "" if enabled else why

    async def rollback(self, service: str, confirm: Confirm) -> ActionResult:
        return await self.control.rollback(service, confirm)

    async def undo(self, service: str, confirm: Confirm) -> ActionResult:
        """Undo the last rollback of `service` (what it changed is on record)."""
        return await self.control.undo(service, confirm)

    # --- auto-rollback -----------------------------------------------------------------

    def observe(self, snap: Snapshot) -> None:
        """Every canary snapshot, as it arrives (even while the display is paused)."""
        if self.auto.phase is Phase.OFF:
            return
        before = self.auto.status()
        after = self.control.observe(snap)
        if after.phase is Phase.COUNTDOWN and before.phase is not Phase.COUNTDOWN:
            self._show()
        elif before.phase is Phase.COUNTDOWN and after.phase is not Phase.COUNTDOWN:
            self._hide()
            self._audit_stops()
            self._say(clean(self.auto.message, 200), timeout=8)
        if (before.phase, before.message) != (after.phase, after.message):
            self._changed()

    def cancel(self, reason: str) -> None:
        """A key or click on the countdown."""
        if self.auto.cancel(reason):
            self._hide()
            self._audit_stops()
            self._say(clean(self.auto.message, 200), severity="warning", timeout=10)
            self._changed()

    def tick(self) -> None:
        """From the front end's timer while the countdown shows."""
        if self.auto.phase is not Phase.COUNTDOWN:
            self._hide()
            return
        if self.auto.due():
            self._hide()
            if self.front is not None:
                self.front.fire()
        self._changed()

    def fire_possible(self) -> bool:
        """Before the automatic rollback runs: False (said, audited) without a controller."""
        if self.controller() is not None:
            return True
        self.auto.cancel("could not run: no rollout controller is running", automatic=True)
        self._audit_stops()
        self._say(clean(self.auto.message, 200), severity="error", timeout=20)
        self._changed()
        return False

    async def fire(self) -> ActionResult | None:
        """The automatic rollback, when still due (None when not)."""
        return await self.control.tick()

    async def close(self) -> None:
        """At quit: a countdown still running is abandoned, and audited as such."""
        if self.auto.cancel("abandoned: the dashboard quit during the countdown"):
            self._hide()
        await self.auto.audit_stops(self.control.gate)  # also any a cancelled job left unwritten

    # --- the front end -----------------------------------------------------------------

    def _show(self) -> None:
        if self.front is not None:
            self._showing = True
            self.front.show_countdown()

    def _hide(self) -> None:
        if self._showing and self.front is not None:
            self._showing = False
            self.front.hide_countdown()

    def _changed(self) -> None:
        if self.front is not None:
            self.front.changed()

    def _say(self, message: str, *, severity: Severity = "information", timeout: float) -> None:
        if self.front is not None:
            self.front.notify(message, title="auto-rollback", severity=severity, timeout=timeout)

    def _audit_stops(self) -> None:
        """The countdown just ended without a rollback: its audit entry, written off the
        caller's stack (the state has already changed, whatever the log says)."""
        if self.front is not None:
            self.front.background(self._write_stops(), "auto-rollback audit")

    async def _write_stops(self) -> None:
        note = await self.auto.audit_stops(self.control.gate)
        if note and self.front is not None:
            self.front.notify(
                f"auto-rollback countdown ended{clean(note, 300)}",
                title="audit",
                severity="error",
                timeout=20,
            )
