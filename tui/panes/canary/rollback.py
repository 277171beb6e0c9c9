"""Rollback on the screen: the `R` request, the automatic one, and the countdown dialog.

`actions.rollback_control.RollbackControl` decides; `CountdownFront` draws what it asks
(`CountdownScreen`: any key or click cancels). Both rollbacks are `ActionRequest`s for
the app's action path: `R` wants the service name typed; the automatic one runs
unconfirmed when the countdown runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ebpftop.actions.rollback_control import RollbackControl, Severity
from ebpftop.core.gate import ActionResult, Confirm, Gate

from ...action_path import ActionRequest, Dialogs, Run
from ...text import clean, lines

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

TICK_S = 0.25


class CountdownScreen(ModalScreen[None]):
    """The running auto-rollback countdown. Any key or click cancels it."""

    DEFAULT_CSS = """
    CountdownScreen { align: center middle; }
    CountdownScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    CountdownScreen #countdown { text-style: bold; color: $error; }
    CountdownScreen .note { color: $text-muted; }
    """

    def __init__(self, control: RollbackControl) -> None:
        super().__init__()
        self.control = control
        self.closed = False  # the countdown ended while another screen was on top of this one

    def close(self) -> None:
        """Take this dialog away; a screen above it (if any) is left alone."""
        self.closed = True
        if self.is_attached and self.app.screen is self:
            self.dismiss()

    def on_screen_resume(self) -> None:
        if self.closed:
            self.dismiss()

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "AUTO-ROLLBACK"
        with box:
            yield Static(Content(self.control.countdown_text()), id="countdown", markup=False)
            # Lines kept (a newline is not shown as \x0a); each line cleaned.
            yield Static(
                Content(lines(self.control.countdown_plan(), 300)), id="countdown-evidence", markup=False
            )
            yield Static("press any key to cancel", classes="note", markup=False)

    def update_text(self) -> None:
        self.query_one("#countdown", Static).update(Content(self.control.countdown_text()))

    def on_key(self, event: events.Key) -> None:
        # Before any binding: this key is the operator saying no, nothing else.
        event.stop()
        event.prevent_default()
        self.control.cancel("cancelled by a key press")

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.control.cancel("cancelled by a click")


class CountdownFront:
    """`RollbackFrontEnd` for the dashboard: dialog, timer, toasts, workers."""

    def __init__(
        self,
        app: App[Any],
        control: RollbackControl,
        *,
        act: Callable[[ActionRequest], None],
        redraw: Callable[[], None],
    ) -> None:
        self.app = app
        self.control = control
        self._act = act
        self._redraw = redraw
        self._screen: CountdownScreen | None = None
        self._timer: Timer | None = None

    def notify(
        self, message: str, *, title: str, severity: Severity = "information", timeout: float | None = None
    ) -> None:
        self.app.notify(message, title=title, severity=severity, timeout=timeout)

    def show_countdown(self) -> None:
        if self._timer is None:
            self._timer = self.app.set_interval(TICK_S, self._tick, name="auto-rollback")
        if self._screen is None:
            self._screen = CountdownScreen(self.control)
            self.app.push_screen(self._screen)
        self.app.bell()

    def hide_countdown(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        screen, self._screen = self._screen, None
        if screen is not None:
            screen.close()

    def _tick(self) -> None:
        if self._screen is not None and self._screen.is_attached:
            self._screen.update_text()
        self.control.tick()

    def changed(self) -> None:
        self._redraw()

    def background(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self.app.run_worker(job, group="auto-rollback-audit", name=name, exit_on_error=False)

    def fire(self) -> None:
        self._act(automatic_request(self.control, then=lambda _result: self.changed()))


def _told(subject: str, **kw: Any) -> dict[str, Any]:
    return dict(
        subject=subject,
        done_title="rolled back",
        failed_title="rollback failed",
        done_timeout=10,
        **kw,
    )


def rollback_request(control: RollbackControl) -> ActionRequest:
    """`R`: the evidence and the plan confirmed by typing the service name."""
    service, why = control.target()

    async def prepare(dialogs: Dialogs) -> Run | None:
        if why:
            # Nothing is asked and nothing is written: there is no action to offer.
            dialogs.say(
                f"rollback unavailable: {clean(why, 300)}", title="rollback", severity="error", timeout=10
            )
            return None

        async def run(_gate: Gate, confirm: Confirm) -> ActionResult:
            return await control.rollback(service, confirm)  # through the same gate, re-asked on a conflict

        return run

    return ActionRequest(
        "rollout.rollback",
        "Roll back the canary",
        prepare,
        **_told(f"rollback of {clean(service, 60)}", failed_timeout=20),
    )


def undo_request(control: RollbackControl) -> ActionRequest:
    """`U`: set back exactly what the last rollback changed, confirmed like `R`
    (nothing to undo is said without asking or writing anything)."""
    # Not `R`'s "why not": a canary that may not be rolled back now may still be restored.
    service, _why = control.target()

    async def prepare(_dialogs: Dialogs) -> Run | None:
        async def run(_gate: Gate, confirm: Confirm) -> ActionResult:
            return await control.undo(service, confirm)

        return run

    return ActionRequest(
        "rollout.undo",
        "Undo the rollback",
        prepare,
        subject=f"undo of the rollback of {clean(service, 60)}",
        done_title="rollback undone",
        failed_title="undo failed",
        done_timeout=10,
        failed_timeout=20,
    )


def automatic_request(
    control: RollbackControl, *, then: Callable[[ActionResult | None], None]
) -> ActionRequest:
    """The countdown ran out: the rollback runs unconfirmed (audited as automatic)."""

    async def prepare(_dialogs: Dialogs) -> Run | None:
        if not control.fire_possible():
            return None

        async def run(_gate: Gate, _confirm: Confirm) -> ActionResult | None:
            return await control.fire()

        return run

    return ActionRequest(
        "rollout.rollback",
        "Roll back the canary",
        prepare,
        then=then,
        **_told(f"AUTOMATIC rollback of {clean(control.auto.service, 60)}", failed_timeout=20),
    )
