"""The one way the dashboard changes the world: refuse → prepare → gate (confirm) → report.

Every action key, the removal of enforced rules at quit and the automatic rollback hand
an `ActionRequest` to the app's `act`; nothing else in the TUI calls `Gate.execute`.
Read-only is decided here, once (the refusal audited). Dialogs and the confirmation are
pushed from the request's worker, so a key never blocks the screen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from textual.worker import NoActiveWorker, Worker, get_current_worker

from ebpftop.actions.marker import marker_action
from ebpftop.core.audit import Actor
from ebpftop.core.bus import Bus
from ebpftop.core.gate import Action, ActionResult, Confirm, Gate, Perform
from ebpftop.core.replay import Replayer
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings

from .screens.confirm import ConfirmScreen
from .screens.prompt import PromptScreen
from .text import clean

if TYPE_CHECKING:
    from textual.app import App
    from textual.dom import DOMNode
    from textual.screen import Screen

GROUP = "action"  # the worker group of every request; the worker-error handler knows it
Severity = Literal["information", "warning", "error"]
# Runs the prepared action through the gate with the operator's confirmation; None
# when it turned out there was nothing to run (an automatic rollback no longer due).
Run = Callable[[Gate, Confirm], Awaitable["ActionResult | None"]]


class Dialogs:
    """What a preparation may ask and say while it runs in the action's worker."""

    def __init__(self, app: App[Any], actor: Actor) -> None:
        self._app = app
        self.actor = actor  # who acts: the gate's, for what the preparation builds

    async def ask(self, screen: Screen[Any]) -> Any:
        """Push `screen` and wait for what it is dismissed with (None: escaped)."""
        return await self._app.push_screen_wait(screen)

    def say(
        self, message: str, *, title: str = "", severity: Severity = "information", timeout: float | None = 3
    ) -> None:
        self._app.notify(message, title=title, severity=severity, timeout=timeout)


# A preparation gathers the input (dialogs), validates it and builds what the gate
# runs; None when there is nothing to run (it has said why). An exception it raises
# is reported as "<failed_prefix>: <error>" and nothing runs.
Prepare = Callable[[Dialogs], Awaitable["Run | None"]]


def through_gate(action: Action, perform: Perform, *, automatic: bool = False) -> Run:
    """The usual run: one action, one perform, one confirmation."""

    async def run(gate: Gate, confirm: Confirm) -> ActionResult:
        return await gate.execute(action, perform, confirm, automatic=automatic)

    return run


@dataclass(frozen=True)
class ActionRequest:
    kind: str  # the audit kind ("rules.add"): what a refusal is recorded as
    title: str  # "Add rule": the refusal's toast and audit title
    prepare: Prepare
    # How the outcome is told: "<subject>: <message>" when a subject is given.
    subject: str = ""
    done_title: str = "done"
    failed_title: str = "failed"
    done_timeout: float | None = None
    failed_timeout: float = 15
    failed_prefix: str = ""  # for an exception from `prepare`, e.g. "rules: nothing changed"
    # Called with the result once it is reported (the caller's follow-up).
    then: Callable[[ActionResult | None], None] | None = None


@runtime_checkable
class Dashboard(Protocol):
    """What a pane may ask of the dashboard it lives in (EbpftopApp is one)."""

    settings: Settings
    runtime: Runtime
    replay: Replayer | None

    @property
    def read_only(self) -> bool: ...

    def act(self, request: ActionRequest) -> None: ...


def dashboard(node: DOMNode) -> Dashboard:
    """`node.app`, typed as the dashboard (panes are only ever mounted in one)."""
    app = node.app
    if not isinstance(app, Dashboard):
        raise TypeError(f"{type(node).__name__} is mounted in {type(app).__name__}, not an ebpftop dashboard")
    return app


class ActionPath:
    """Owns the read-only decision and the one sequence every request goes through."""

    def __init__(self, app: App[Any], gate: Gate, *, read_only: bool) -> None:
        self._app = app
        self.gate = gate
        self.read_only = read_only
        self.dialogs = Dialogs(app, gate.actor)
        self._answered: set[Worker[Any]] = set()  # action workers the gate has answered

    def start(self, request: ActionRequest) -> None:
        """From a key: refused at once in read-only mode, else run in an action worker.
        A failure the path did not expect ends in the app's worker-error handler."""
        if self.read_only:
            self.refuse(request)
            return
        self._app.run_worker(self.run(request), group=GROUP, name=request.kind, exit_on_error=False)

    async def run(self, request: ActionRequest) -> ActionResult | None:
        """The path itself; returns the gate's result (None when nothing reached it)."""
        if self.read_only:
            self.refuse(request)
            return None
        try:
            run = await request.prepare(self.dialogs)
        except Exception as exc:
            prefix = request.failed_prefix or f"{request.title.lower()}: not done"
            self._app.notify(f"{prefix}: {clean(exc, 300)}", severity="error", timeout=15)
            return None
        if run is None:
            return None
        result = await run(self.gate, self.confirm)
        self._got_result()
        if result is not None:
            self.report(request, result)
        if request.then is not None:
            request.then(result)
        return result

    def _got_result(self) -> None:
        with contextlib.suppress(NoActiveWorker):  # awaited outside a worker: nobody to tell
            self._answered.add(get_current_worker())

    async def worker_failed(self, worker: Worker[Any], error: BaseException) -> None:
        """An action's worker died of an unexpected error. Once the gate has answered,
        its entries (intent, result) tell the story; before that, an entry says the
        action did not complete, so the log does not end at a key the operator
        remembers pressing."""
        if worker in self._answered:
            self._answered.discard(worker)
            return
        name = worker.name or "action"
        action = Action(
            kind=name,
            title=name,
            description=f"{name} did not complete: the dashboard failed while handling it",
        )
        note = await self.gate.record_not_run(action, f"failed: {_describe(error)}", automatic=False)
        if note:
            self._app.notify(f"audit{clean(note, 300)}", title="audit", severity="error", timeout=20)

    def worker_done(self, worker: Worker[Any]) -> None:
        self._answered.discard(worker)

    async def confirm(self, action: Action) -> bool:
        screen: Screen[Any] = ConfirmScreen(action)
        return bool(await self._app.push_screen_wait(screen))

    def report(self, request: ActionRequest, result: ActionResult) -> None:
        message = clean(result.message, 300)
        if request.subject:
            message = f"{request.subject}: {message}"
        if result.ok:
            self._app.notify(message, title=request.done_title, timeout=request.done_timeout)
        elif result.refused or result.cancelled:
            title = "refused" if result.refused else "cancelled"
            self._app.notify(message, title=title, severity="warning")
        else:
            self._app.notify(
                message, title=request.failed_title, severity="error", timeout=request.failed_timeout
            )

    def refuse(self, request: ActionRequest) -> None:
        """Read-only: nothing is asked and nothing runs.

        When the gate is read-only as well, it is asked anyway so the refusal is
        audited; the perform and confirm it is handed refuse too, in case it is not.
        """
        self._app.notify(f"read-only: {request.title.lower()} refused", severity="warning")
        if self.gate.read_only:
            self._app.run_worker(
                self._audit_refusal(request), group=GROUP, name="refusal", exit_on_error=False
            )

    async def _audit_refusal(self, request: ActionRequest) -> None:
        async def never_perform() -> str:
            raise PermissionError("read-only")

        async def never_confirm(_action: Action) -> bool:
            return False

        action = Action(
            kind=request.kind, title=request.title, description=f"{request.title} (refused: read-only mode)"
        )
        await self.gate.execute(action, never_perform, never_confirm)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- the app's own requests (the panes build theirs) ----------------------------------


def marker_request(bus: Bus, max_len: int) -> ActionRequest:
    """`m`: ask for the text, then publish it as a marker (audited)."""

    async def prepare(dialogs: Dialogs) -> Run | None:
        text = await dialogs.ask(
            PromptScreen(
                "Incident marker",
                "Marker text (shown in recordings and the audit log):",
                "e.g. rolled back canary v2",
                max_len,
            )
        )
        if text is None:
            dialogs.say("marker cancelled")
            return None
        return through_gate(*marker_action(bus, text, dialogs.actor))

    return ActionRequest(
        "marker.add", "Add incident marker", prepare, failed_prefix="marker not added", failed_timeout=15
    )
