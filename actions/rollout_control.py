"""What the dashboard calls for rollouts: the canary pane's rollback key and the
auto-rollback countdown, fed from the store (latest "rollout" and "canary" snapshots).

The controller is the rollout collector's own when it runs (one client, and the state
the operator saw is the state the plan is made from); otherwise one is built from the
settings on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ebpftop.collectors.canary.data import ServiceCanary
from ebpftop.collectors.rollout.base import Controller, ControllerError
from ebpftop.collectors.rollout.collector import HINT, RolloutCollector, controller_from
from ebpftop.collectors.rollout.model import RolloutState
from ebpftop.core.gate import READ_ONLY_REASON, ActionResult, Confirm, Gate
from ebpftop.core.model import Snapshot
from ebpftop.core.store import Store

from .auto_rollback import AutoRollback, AutoStatus
from .rollback import RollbackUnavailable, run_rollback
from .undo_rollback import run_undo


class RolloutControl:
    def __init__(
        self,
        settings: Any,
        store: Store,
        gate: Gate,
        *,
        collector: RolloutCollector | None = None,
        controller: Controller | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.gate = gate
        self._collector = collector
        self._controller = controller
        self._problem = ""
        self.auto = AutoRollback.from_settings(settings, clock=clock)

    @classmethod
    def from_runtime(cls, runtime: Any, **kw: Any) -> RolloutControl:
        collector = next((c for c in runtime.collectors if isinstance(c, RolloutCollector)), None)
        return cls(runtime.settings, runtime.store, runtime.gate, collector=collector, **kw)

    # -- what the pane shows ------------------------------------------------------------

    def state(self, service: str) -> RolloutState | None:
        found = _find(self.store.latest("rollout"), service)
        return found if isinstance(found, RolloutState) else None

    def evidence(self, service: str) -> ServiceCanary | None:
        """The latest canary evaluation of `service`, or None."""
        found = _find(self.store.latest("canary"), service)
        return found if isinstance(found, ServiceCanary) else None

    def controller(self) -> Controller | None:
        if self._collector is not None and self._collector.controller is not None:
            return self._collector.controller
        if self._controller is None and not self._problem:
            try:
                self._controller = controller_from(self.settings)
            except ControllerError as exc:
                self._problem = str(exc)
        return self._controller

    def can_rollback(self, service: str) -> tuple[bool, str]:
        """(enabled, why not) for the `R` binding and the pane's hint."""
        if self.gate.read_only:
            return False, READ_ONLY_REASON
        ctl = self.controller()
        if ctl is None:
            return False, self._problem or f"no rollout controller configured: {HINT}"
        if service != ctl.service:
            return False, f"no rollout controller for {service} (configured: {ctl.service})"
        state = self.state(service)
        if state is not None and not state.can_rollback:
            return False, state.rollback_reason
        return True, ""

    # -- acting ---------------------------------------------------------------------------

    async def rollback(self, service: str, confirm: Confirm) -> ActionResult:
        """`R` confirmed through `confirm(action)` (show action.description, require
        action.confirm_text to be typed). Never raises for a failure; read-only refuses."""
        ctl = self.controller()
        if ctl is None and not self.gate.read_only:
            return ActionResult(False, self._problem or "no rollout controller configured")
        if ctl is None:
            return ActionResult(False, READ_ONLY_REASON, refused=True)
        try:
            return await run_rollback(
                self.gate, ctl, service, self.evidence(service), confirm, state=self.state(service)
            )
        except RollbackUnavailable as exc:
            return ActionResult(False, str(exc))

    async def undo(self, service: str, confirm: Confirm) -> ActionResult:
        """Undo ebpftop's last rollback of `service`, confirmed like `R`. Never raises
        for a failure; nothing to undo says why without asking or writing anything."""
        ctl = self.controller()
        if ctl is None:
            if self.gate.read_only:
                return ActionResult(False, READ_ONLY_REASON, refused=True)
            return ActionResult(False, self._problem or "no rollout controller configured")
        try:
            return await run_undo(self.gate, ctl, service, self.evidence(service), confirm)
        except RollbackUnavailable as exc:
            return ActionResult(False, str(exc))

    def observe(self, snap: Snapshot) -> AutoStatus:
        """Feed every canary snapshot (the bus or the store's latest); returns the countdown state."""
        if snap.source == "canary" and snap.data is not None:
            evidence = _find(snap, self.auto.service)
            if evidence is not None:
                return self.auto.observe(evidence)
        return self.auto.status()

    def cancel_auto(self) -> bool:
        """Any key during the countdown."""
        return self.auto.cancel()

    async def tick(self) -> ActionResult | None:
        """From a timer (about once a second): runs the automatic rollback when it is due."""
        ctl = self.controller()
        if ctl is None or not self.auto.due():
            return None
        return await self.auto.fire_if_due(self.gate, ctl, self.state(self.auto.service))


def _find(snap: Snapshot | None, service: str) -> Any:
    services = getattr(getattr(snap, "data", None), "services", None) or ()
    return next((s for s in services if getattr(s, "service", getattr(s, "name", None)) == service), None)
