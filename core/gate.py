"""The one gate every action goes through: read-only check, confirmation, audit log.

The TUI's bindings, the CLI verbs and automatic jobs (a rule's TTL, say) all call
`Gate.execute`; nothing that changes the world is reachable any other way. The gate is
the last line of defence in kiosk mode: even an action invoked directly, bypassing
the hidden bindings, is refused here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .audit import Actor, AuditError, AuditLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """What an action will do, as the confirmation screen and the audit log show it.

    `confirm_text` is enforced by the confirmation screen (the `confirm` callback),
    not by the gate: the gate only trusts the boolean the callback returns.
    """

    kind: str  # "marker.add", later "rules.add", "rollout.rollback", "profiles.capture"
    title: str  # short: "Add incident marker"
    description: str  # exactly what will happen, shown on the confirmation screen
    target: str = ""  # what it acts on (service, rule id, pid)
    params: dict[str, Any] = field(default_factory=dict)  # JSON-able, written to the audit log
    dangerous: bool = False
    confirm_text: str | None = None  # when set, the user must type this to confirm

    def audit_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "target": self.target,
            "params": self.params,
            "dangerous": self.dangerous,
        }


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    refused: bool = False  # read-only mode: nothing ran
    cancelled: bool = False  # the user said no: nothing ran


Perform = Callable[[], Awaitable[str]]
Confirm = Callable[[Action], Awaitable[bool]]

READ_ONLY_REASON = "refused: read-only (kiosk) mode, no action can run"


class Gate:
    """Runs actions, each exactly once, with an audit trail; never raises for a failure.

    `execute` semantics, in order:
    1. Read-only: nothing is asked and nothing runs; a "refused" entry is written and
       the result has refused=True. `read_only` is fixed when the gate is built.
    2. Unless `automatic`, `confirm(action)` is awaited. False (or an exception from
       it) cancels: perform is not called, a "cancelled" entry is written (who looked
       at what and declined is part of an incident's story), cancelled=True.
       `automatic=True` is for jobs the operator already confirmed (a rule's TTL
       expiring); entries say so.
    3. An "intent" entry is written BEFORE perform. If it cannot be written the action
       does not run: an unaudited action is worse than none (ok=False, says why).
    4. perform() is awaited; its string is the success message. An exception becomes
       ok=False with the error; it never propagates. If the task is cancelled
       mid-perform, a result entry saying so is written and the cancel propagates.
    5. A "result" entry (ref = the intent's seq, ok, message) is written. If that
       fails the action has still happened: the result reports it and adds that its
       outcome is missing from the log.
    Entries that fail to write for refused/cancelled outcomes are logged and noted in
    the message; they do not change the outcome.
    """

    def __init__(self, audit: AuditLog, *, read_only: bool, actor: Actor | None = None) -> None:
        self._audit = audit
        self._read_only = bool(read_only)
        self.actor = actor or Actor.current()

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def audit_path(self) -> str:
        return str(self._audit.path)

    async def execute(
        self,
        action: Action,
        perform: Perform,
        confirm: Confirm,
        *,
        automatic: bool = False,
    ) -> ActionResult:
        if self._read_only:
            note = await self._record_quietly(
                "refused", action, automatic, ok=False, message=READ_ONLY_REASON
            )
            return ActionResult(False, READ_ONLY_REASON + note, refused=True)

        if not automatic:
            reason = "cancelled: nothing was done"
            try:
                confirmed = bool(await confirm(action))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                confirmed = False
                reason = f"cancelled: the confirmation failed ({_describe(exc)}); nothing was done"
            if not confirmed:
                note = await self._record_quietly("cancelled", action, automatic, ok=False, message=reason)
                return ActionResult(False, reason + note, cancelled=True)

        try:
            intent = await asyncio.to_thread(
                self._audit.append, "intent", self.actor, action.audit_record(), automatic=automatic
            )
        except Exception as exc:
            return ActionResult(
                False, f"not performed: the audit log could not be written: {_audit_error(exc)}"
            )

        try:
            message = str(await perform())
            ok = True
        except asyncio.CancelledError:
            # Synchronous on purpose: the task is being cancelled, another await may not run.
            self._append_result_now(action, automatic, intent["seq"], False, "interrupted before it finished")
            raise
        except Exception as exc:
            log.debug("action %s failed", action.kind, exc_info=True)
            message, ok = f"failed: {_describe(exc)}", False

        try:
            await asyncio.to_thread(
                self._audit.append,
                "result",
                self.actor,
                action.audit_record(),
                automatic=automatic,
                ref=intent["seq"],
                ok=ok,
                message=message,
            )
        except Exception as exc:
            log.error("audit result entry for seq %s not written: %s", intent["seq"], exc)
            message += f" (but its result could not be written to the audit log: {_audit_error(exc)})"
        return ActionResult(ok, message)

    async def record_not_run(self, action: Action, message: str, *, automatic: bool) -> str:
        """Audit an action that was on its way and ended without running: an automatic
        rollback whose countdown was cancelled, or stopped by itself. A "cancelled"
        entry; nothing is performed. Returns "" or why the entry could not be written
        (it never raises: not acting needs no permission)."""
        return await self._record_quietly("cancelled", action, automatic, ok=False, message=message)

    async def _record_quietly(self, event: str, action: Action, automatic: bool, **fields: Any) -> str:
        try:
            await asyncio.to_thread(
                self._audit.append, event, self.actor, action.audit_record(), automatic=automatic, **fields
            )
        except Exception as exc:
            log.error("audit %s entry not written: %s", event, exc)
            return f" (not recorded: the audit log could not be written: {_audit_error(exc)})"
        return ""

    def _append_result_now(self, action: Action, automatic: bool, ref: int, ok: bool, message: str) -> None:
        try:
            self._audit.append(
                "result",
                self.actor,
                action.audit_record(),
                automatic=automatic,
                ref=ref,
                ok=ok,
                message=message,
            )
        except Exception as exc:
            log.error("audit result entry for seq %s not written: %s", ref, _audit_error(exc))


def _audit_error(exc: Exception) -> str:
    return str(exc) if isinstance(exc, AuditError) else _describe(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
