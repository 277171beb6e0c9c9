"""Undo a rollback as a gate action: set back exactly what ebpftop's last rollback
changed (the controller remembers it: collectors/rollout/memory.py), confirmed by
typing the service name, since it sends traffic back to a canary that was judged bad.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ebpftop.collectors.canary.data import ServiceCanary
from ebpftop.collectors.rollout.base import Controller, ControllerError
from ebpftop.core.gate import Action, ActionResult, Confirm, Gate
from ebpftop.core.untrusted import clean

from .rollback import RollbackUnavailable, plan_action

KIND = "rollout.undo"


def undo_action(
    controller: Controller, service: str, evidence: ServiceCanary | None = None
) -> tuple[Action, Callable[[], Awaitable[str]]]:
    """The undo Action and its perform. Raises RollbackUnavailable when there is nothing to undo."""
    if service != controller.service:
        raise RollbackUnavailable(
            f"no rollout controller for service {service!r} (configured: {controller.service!r})"
        )
    try:
        plan = controller.plan_undo()
    except ControllerError as exc:
        raise RollbackUnavailable(str(exc)) from None
    headline = (
        f"Undo the rollback of {clean(service)}: the canary takes traffic again ({clean(plan.summary)})."
    )
    action = plan_action(
        KIND, f"Undo the rollback of {service}", controller, service, plan, evidence, [headline]
    )

    async def perform() -> str:
        return await controller.undo(plan)

    return action, perform


async def run_undo(
    gate: Gate, controller: Controller, service: str, evidence: ServiceCanary | None, confirm: Confirm
) -> ActionResult:
    """Undo through the gate. Raises RollbackUnavailable (before anything is asked or
    written) when there is nothing to undo."""
    action, perform = undo_action(controller, service, evidence)
    return await gate.execute(action, perform, confirm)
