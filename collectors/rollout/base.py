"""The rollout controller seam: read a service's rollout state; roll back (all traffic
to stable) and, where the controller can, promote; each with a dry run.

A dry run (`plan_rollback`, `plan_promote`) is built from what was last read and
sends nothing; `rollback(plan)` sends exactly that plan, so what the operator
confirmed is what goes out. Failures raise ControllerError with a message that names
the controller, where it is and what it answered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .model import Plan, RolloutState


class ControllerError(Exception):
    """The controller could not be read or refused an action; the message says why."""


class NotSupported(ControllerError):
    """This controller cannot do that action."""


class Conflict(ControllerError):
    """The rollout changed between reading and acting (HTTP 409): nothing was applied.

    `changes` lists what differs between the state the plan was made from and the
    state re-read after the conflict; `state` is the re-read state.
    """

    def __init__(self, message: str, state: RolloutState, changes: list[str]) -> None:
        super().__init__(message)
        self.state = state
        self.changes = changes


class Controller(ABC):
    kind: str = "?"

    def __init__(self, service: str) -> None:
        self.service = service

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where the controller is, fit to show (no credentials)."""

    @abstractmethod
    async def state(self) -> RolloutState:
        """Read the current state. Raises ControllerError."""

    @abstractmethod
    def plan_rollback(self, state: RolloutState | None = None) -> Plan:
        """What a rollback would send, from `state` (or the last state read)."""

    @abstractmethod
    async def rollback(self, plan: Plan) -> str:
        """Send `plan`; return what happened in one line. Raises ControllerError."""

    def plan_promote(self, state: RolloutState | None = None) -> Plan:
        raise NotSupported(f"{self.kind} at {self.endpoint}: promote is not supported")

    async def promote(self, plan: Plan) -> str:
        raise NotSupported(f"{self.kind} at {self.endpoint}: promote is not supported")

    def plan_undo(self) -> Plan:
        """What undoing ebpftop's last rollback would send: exactly the settings that
        rollback changed, as they were. Raises ControllerError when there is none."""
        raise NotSupported(f"{self.kind} at {self.endpoint}: undoing a rollback is not supported")

    async def undo(self, plan: Plan) -> str:
        raise NotSupported(f"{self.kind} at {self.endpoint}: undoing a rollback is not supported")

    async def close(self) -> None:  # noqa: B027  # optional hook: a controller holding no client keeps it
        """Release clients; safe to call twice."""


def changes_between(before: RolloutState, after: RolloutState) -> list[str]:
    """Human lines for the fields that differ (what the operator should look at again)."""
    fields = (
        ("phase", "phase"),
        ("step", "step"),
        ("canary revision", "canary_revision"),
        ("stable revision", "stable_revision"),
        ("canary weight", "canary_weight"),
        ("stable weight", "stable_weight"),
        ("message", "message"),
    )
    out = []
    for label, name in fields:
        a, b = getattr(before, name), getattr(after, name)
        if a != b:
            out.append(f"{label}: {_show(a)} -> {_show(b)}")
    if not out and before.version != after.version:
        out.append(
            f"resource version: {before.version or '?'} -> {after.version or '?'} "
            "(no field ebpftop shows changed)"
        )
    return out


def _show(value: object) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, float):
        return f"{value:g}%"
    return str(value)
