"""Rollback from the dashboard: the `R` key and the auto-rollback countdown.

`R` goes through `actions.rollout_control.RolloutControl` (the rollout collector's
controller, the latest canary evaluation as evidence, the latest rollout state) and the
runtime's gate: the confirmation shows the evidence and exactly what will be sent
where, and wants the service name typed; the gate audits intent and result (and
refuses in read-only mode). When rollback cannot be offered (not permitted, no
controller) the toast says why and nothing is asked or written.

Auto-rollback (only with `--auto-rollback`, never in read-only mode or a replay):
every canary evaluation is fed to `actions.auto_rollback.AutoRollback`; when it
starts a countdown, a dialog shows it with the evidence, and any key (or click)
cancels; when the countdown runs out the rollback runs through the gate as an
automatic action with its evidence. A countdown that ends without a rollback
(cancelled, the verdict recovered, no controller, the dashboard quit) is audited as
"cancelled" with the same evidence. The countdown's clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ebpftop.actions.auto_rollback import AutoRollback, Phase
from ebpftop.actions.rollback import evidence_text
from ebpftop.actions.rollout_control import RolloutControl

from ...text import clean

CANARY = "canary"
ROLLOUT = "rollout"
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
            yield Static(
                Content(clean(evidence_text(self.control.auto.evidence), 2000)),
                id="countdown-evidence",
                markup=False,
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


class RollbackControl:
    """The app's side of `actions.rollout_control.RolloutControl`: keys, dialogs, toasts."""

    def __init__(self, app: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        settings = app.settings
        runtime = app.runtime
        self.control: RolloutControl | None = None
        if all(hasattr(runtime, name) for name in ("store", "gate", "collectors")):
            self.control = RolloutControl.from_runtime(runtime, clock=clock)
        if self.control is not None and not app.read_only:
            self.auto = self.control.auto
        else:
            # Never a countdown from a kiosk or a replay: the gate would refuse it anyway.
            self.auto = AutoRollback(settings.rollout_service, enabled=False)
            if settings.auto_rollback:
                self.auto.message = "auto-rollback off: read-only"
        self._screen: CountdownScreen | None = None
        self._timer: Any = None

    # --- where things are ------------------------------------------------------------

    def controller(self) -> Any:
        return self.control.controller() if self.control is not None else None

    def available(self) -> bool:
        """`R` is offered when a rollout controller is configured or running."""
        if self.control is None:
            return False
        return bool(self.app.settings.rollout_controller) or any(
            c.name == ROLLOUT for c in self.app.runtime.collectors
        )

    # --- R -----------------------------------------------------------------------------

    def request(self) -> None:
        self.app.run_worker(self._rollback_flow(), exclusive=True, group="action", name="rollback")

    async def _rollback_flow(self) -> None:
        app = self.app
        controller = self.controller()
        service = controller.service if controller is not None else app.settings.rollout_service
        enabled, why = (
            self.control.can_rollback(service)
            if self.control is not None
            else (False, "no rollout controller")
        )
        if not enabled:
            # Nothing is asked and nothing is written: there is no action to offer.
            app.notify(
                f"rollback unavailable: {clean(why, 300)}", title="rollback", severity="error", timeout=10
            )
            return
        result = await self.control.rollback(service, app._confirm)
        self._notify_result(f"rollback of {clean(service, 60)}", result)

    def _notify_result(self, what: str, result: Any) -> None:
        message = f"{what}: {clean(result.message, 300)}"
        if result.ok:
            self.app.notify(message, title="rolled back", timeout=10)
        elif result.refused or result.cancelled:
            self.app.notify(message, title="refused" if result.refused else "cancelled", severity="warning")
        else:
            self.app.notify(message, title="rollback failed", severity="error", timeout=20)

    # --- auto-rollback -------------------------------------------------------------------

    def observe(self, snap: Any) -> None:
        """Every canary snapshot, as it arrives (even while the display is paused)."""
        if self.auto.phase is Phase.OFF or self.control is None:
            return
        before = self.auto.status()
        after = self.control.observe(snap)
        if after.phase is Phase.COUNTDOWN and before.phase is not Phase.COUNTDOWN:
            self._start_countdown()
        elif before.phase is Phase.COUNTDOWN and after.phase is not Phase.COUNTDOWN:
            self._stop_countdown()
            self._audit_stops()
            self.app.notify(clean(self.auto.message, 200), title="auto-rollback", timeout=8)
        if (before.phase, before.message) != (after.phase, after.message):
            self._redraw_pane()

    def status_line(self) -> str:
        """For the canary pane: empty when auto-rollback is off and was never asked for."""
        phase = self.auto.phase
        if phase is Phase.OFF:
            return clean(self.auto.message, 100) if self.app.settings.auto_rollback else ""
        if phase is Phase.COUNTDOWN:
            return self.countdown_text()
        return "auto-rollback: " + clean(self.auto.message or "armed", 200)

    def countdown_text(self) -> str:
        left = self.auto.remaining()
        secs = "now" if left is None or left <= 0 else f"in {left:.0f}s"
        return f"AUTO-ROLLBACK of {clean(self.auto.service, 60)} {secs}: press any key to cancel"

    def _start_countdown(self) -> None:
        if self._timer is None:
            self._timer = self.app.set_interval(TICK_S, self._tick, name="auto-rollback")
        if self._screen is None:
            self._screen = CountdownScreen(self)
            self.app.push_screen(self._screen)
        self.app.bell()

    def _stop_countdown(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        screen, self._screen = self._screen, None
        if screen is not None:
            screen.close()

    def cancel(self, reason: str) -> None:
        if self.auto.cancel(reason):
            self._stop_countdown()
            self._audit_stops()
            self.app.notify(
                clean(self.auto.message, 200), title="auto-rollback", severity="warning", timeout=10
            )
            self._redraw_pane()

    def _audit_stops(self) -> None:
        """The countdown just ended without a rollback: its audit entry, written off the
        UI thread (the state has already changed, whatever the log says)."""
        if self.control is not None:
            self.app.run_worker(self._write_stops(), group="auto-rollback-audit", name="auto-rollback audit")

    async def _write_stops(self) -> None:
        note = await self.auto.audit_stops(self.control.gate)
        if note:
            self.app.notify(
                f"auto-rollback countdown ended{clean(note, 300)}",
                title="audit",
                severity="error",
                timeout=20,
            )

    async def close(self) -> None:
        """At quit: a countdown still running is abandoned, and audited as such."""
        if self.control is None:
            return
        if self.auto.cancel("abandoned: the dashboard quit during the countdown"):
            self._stop_countdown()
        await self.auto.audit_stops(self.control.gate)  # also any a cancelled worker left unwritten

    def _tick(self) -> None:
        if self.auto.phase is not Phase.COUNTDOWN:
            self._stop_countdown()
            return
        if self._screen is not None and self._screen.is_attached:
            self._screen.update_text()
        if self.auto.due():
            self._stop_countdown()
            self.app.run_worker(self._fire(), group="auto-rollback", name="auto-rollback")
        self._redraw_pane()

    async def _fire(self) -> None:
        if self.controller() is None:
            self.auto.cancel("could not run: no rollout controller is running", automatic=True)
            self._audit_stops()
            self.app.notify(
                clean(self.auto.message, 200), title="auto-rollback", severity="error", timeout=20
            )
            self._redraw_pane()
            return
        result = await self.control.tick()
        if result is not None:
            self._notify_result(f"AUTOMATIC rollback of {clean(self.auto.service, 60)}", result)
        self._redraw_pane()

    def _redraw_pane(self) -> None:
        if getattr(self.app, "paused", False):
            return  # a paused display stays as it was; the countdown dialog still shows
        pane = getattr(self.app, "_panes", {}).get(CANARY)
        if pane is not None and pane.is_attached:
            pane.redraw()
