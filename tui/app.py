"""The dashboard: host header, four source panes, footer; layout, keys, themes, kiosk.

The flush of snapshots into the panes is `tui/flush.py` (mixed in); every action that
changes the world goes through `tui/action_path.py`; quitting with enforced rules is
`tui/quit.py`. Read-only hides and disables acting keys (`check_action`), leaves them out
of the command palette and turns off suspend (ctrl+z).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from textual import events
from textual.app import App, ComposeResult, ScreenStackError, SuspendNotSupported, SystemCommand
from textual.binding import BindingType
from textual.containers import Container
from textual.driver import Driver
from textual.errors import NoWidget
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from ebpftop.actions.capture import find_collector
from ebpftop.actions.rollback_control import RollbackControl
from ebpftop.collectors.selfcost.collector import find as find_selfcost
from ebpftop.collectors.selfcost.summary import OwnCost, own_cost
from ebpftop.core.alarms import Alarm, data_alarms
from ebpftop.core.model import Snapshot
from ebpftop.core.replay import Replayer, ReplayRuntime
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.themes import DEFAULT_THEME, STYLESHEET, THEME_NAMES, next_theme, register_themes

from . import screenshot
from .action_path import GROUP as ACTION_GROUP
from .action_path import ActionPath, ActionRequest, marker_request
from .bindings import KEYMAP, app_bindings, key_display
from .flush import MARKER_MAX, SnapshotFlush
from .key_actions import acting_names, replay_names
from .panes import PANES
from .panes.base import SourcePane
from .panes.canary.pane import CanaryPane
from .panes.canary.rollback import CountdownFront, rollback_request, undo_request
from .panes.header import HostHeader
from .panes.profiles.pane import ProfilesPane
from .quit import ask_and_quit, enforced, remove_enforced_request
from .screens.help import HelpScreen
from .screens.own_cost import OwnCostScreen
from .text import clean, lines

log = logging.getLogger(__name__)

NARROW_BELOW = 120  # columns: under this the panes stack instead of a 2x2 grid

_ACTING = acting_names()
_REPLAY = replay_names()
# Actions that make sense while a dialog is open on top of the dashboard.
_ANY_SCREEN = frozenset({"quit", "help_quit", "command_palette", "cycle_theme"})
_OURS = frozenset(action.split("(")[0] for _key, action, _show in KEYMAP)


class LogKeeper(logging.Handler):
    """Unconfigured, Python sends warnings to stderr, which Textual swallows while the
    screen is up: they would be lost without a trace. While the app runs they are kept
    here instead (bounded), and `EbpftopApp.run` prints the count and the last few once
    the terminal is back to normal."""

    def __init__(self, keep: int = 200) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[logging.LogRecord] = deque(maxlen=keep)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.records.append(record)


class EbpftopApp(SnapshotFlush, App[int]):
    CSS_PATH = STYLESHEET
    TITLE = "ebpftop"
    BINDINGS: ClassVar[list[BindingType]] = [*app_bindings()]

    paused: reactive[bool] = reactive(False)

    def __init__(self, runtime: Runtime, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.replay: Replayer | None = runtime.replay if isinstance(runtime, ReplayRuntime) else None
        # The one read-only decision of the dashboard (the gate's comes from the same settings).
        self.action_path = ActionPath(self, runtime.gate, read_only=runtime.read_only)
        self._clock = clock or time.time
        self._panes: dict[str, SourcePane] = {}
        self._order: list[SourcePane] = []
        self._dirty: set[str] = set()
        self._data_alarms: dict[str, tuple[Alarm, ...]] = {}  # per pane source, as last shown
        self._flush_scheduled = False
        self._last_frame = 0.0
        # Live sources' snapshots (collectors here, or an agent's stream) are batched into one
        # frame per refresh interval; a replay (its own pace) and snapshots published by hand
        # draw at once.
        live = self.replay is None and runtime.live
        self.redraw_every = float(self.settings.refresh) if live else 0.0
        self._aged_by_flush = False  # the last data flush redrew the ages: the tick may rest
        self._pending = 0  # snapshots that arrived while paused
        self._unsubscribe: Callable[[], None] | None = None
        self._ui_loop: asyncio.AbstractEventLoop | None = None
        self._main_screen: Screen[Any] | None = None
        self._theme_problem = ""
        self._recorder_state: str | None = None
        self._header: HostHeader | None = None
        self.rollback_control = RollbackControl(runtime, read_only=self.read_only)  # R, auto-rollback
        self._enforced_told = False  # the start notice of rules enforced from before
        self.log_keeper = LogKeeper()
        self._log_installed = False
        register_themes(self)
        wanted = self.settings.theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self._theme_problem = (
                f"unknown theme {clean(wanted, 60)!r}; using {DEFAULT_THEME}. "
                f"Themes: {', '.join(THEME_NAMES)}"
            )
            self.theme = DEFAULT_THEME
        if self.read_only:
            self.title = "ebpftop — READ-ONLY"
            # Without this variable Textual keeps ctrl+z as a plain key (no SIGTSTP);
            # a kiosk must not be suspendable from its keyboard.
            os.environ.pop("TEXTUAL_ALLOW_SIGNALS", None)

    @property
    def read_only(self) -> bool:
        """Kiosk or replay: nothing may act (decided once, in the action path)."""
        return self.action_path.read_only

    def get_driver_class(self) -> type[Driver]:
        cls = super().get_driver_class()
        from textual.drivers.linux_driver import LinuxDriver

        if cls is LinuxDriver:
            from .terminal import OwnFdDriver

            return OwnFdDriver
        return cls

    # --- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self._header = HostHeader()
        yield self._header
        with Container(id="panes"):
            for cls in PANES:
                pane = cls()
                self._panes[pane.source] = pane
                self._order.append(pane)
                yield pane
        profiles = self._panes.get("profiles")
        if isinstance(profiles, ProfilesPane):
            # `c`'s actuator, handed over once: a pane never reads the runtime itself.
            profiles.capturer = find_collector(self.runtime)
        yield Footer()

    async def on_mount(self) -> None:
        root = logging.getLogger()
        if not root.handlers:  # nobody configured logging: keep warnings for the exit
            root.addHandler(self.log_keeper)
            self._log_installed = True
        self._main_screen = self.screen
        self.rollback_control.attach(
            CountdownFront(self, self.rollback_control, act=self.act, redraw=self._redraw_canary)
        )
        self._ui_loop = asyncio.get_running_loop()
        self._count_terminal_bytes()
        self.set_class(self.read_only, "-kiosk")
        self.set_class(self.size.width < NARROW_BELOW, "-narrow")
        self._order[0].focus()
        self._redraw_all()
        self._unsubscribe = self.runtime.bus.subscribe(self._on_snapshot)
        if self._theme_problem:
            self.notify(self._theme_problem, severity="warning", timeout=10)
        damage = self.replay.damage if self.replay is not None else None
        if damage:
            self.notify(
                f"recording damaged: {clean(damage, 200)} — replaying up to there",
                severity="warning",
                timeout=15,
            )
        self.set_interval(max(0.25, float(self.settings.refresh)), self._tick, name="ages")
        # The first frame goes out before any collector starts (imports, BPF compiling,
        # first requests): the operator sees the layout and each source "starting".
        self.call_after_refresh(self._start_sources)

    def _count_terminal_bytes(self) -> None:
        """What reaches the terminal is part of ebpftop's cost: the selfcost source
        counts every byte the driver writes (none when headless: tests)."""
        selfcost = find_selfcost(self.runtime)
        driver = self._driver
        if selfcost is not None and driver is not None and not driver.is_headless:
            from .terminal import count_writes

            count_writes(driver, selfcost.terminal)

    async def _start_sources(self) -> None:
        if self._unsubscribe is not None:  # not already unmounting
            await self.runtime.start()

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.rollback_control.close()  # a countdown cut short by quitting is audited
        await self.runtime.stop()
        if self._log_installed:
            logging.getLogger().removeHandler(self.log_keeper)
            self._log_installed = False

    def run(self, *args: Any, **kwargs: Any) -> int | None:
        try:
            return super().run(*args, **kwargs)
        finally:
            from .terminal import quiet_if_hung_up

            quiet_if_hung_up()  # an SSH drop: nothing below may fail on the dead terminal
            keeper = self.log_keeper
            if keeper.count:
                print(
                    f"ebpftop: {keeper.count} warning(s) were logged while the dashboard ran; "
                    f"the last {len(list(keeper.records)[-5:])}:",
                    file=sys.stderr,
                )
                for record in list(keeper.records)[-5:]:
                    print(
                        f"  {record.levelname} {record.name}: {clean(record.getMessage(), 300)}",
                        file=sys.stderr,
                    )

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "-narrow")

    async def on_event(self, event: events.Event) -> None:
        # A widget that has just left the DOM (a toast timing out or clicked away) stays
        # in the screen's compositor map until the next layout; a press or drag landing
        # on it in that window crashes Textual 8.2.8 (Screen._forward_event starts a
        # selection in its parent, None: AttributeError ... 'region'). Upstream:
        # Textualize/textual#6643, fix proposed in PR #6645, both open. Until it lands,
        # such a press is a miss: a wall display must not die from a click.
        if isinstance(event, (events.MouseDown, events.MouseMove)) and not event.is_forwarded:
            try:
                hit, _region = self.screen.get_widget_at(event.x, event.y)
            except (NoWidget, ScreenStackError):  # Textual decides what a miss does
                hit = None
            if hit is not None and not hit.is_attached:
                return
        await super().on_event(event)

    def notify(
        self,
        message: object,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Toasts carry outside text (markers, errors): always literal and cleaned, even
        when a caller asks for markup (Textual's `Widget.notify` does by default)."""
        super().notify(
            lines(message), title=clean(title, 80), severity=severity, timeout=timeout, markup=False
        )

    def action_help_quit(self) -> None:
        """ctrl+c. Textual's own toast is markup (`Press [b]ctrl+q[/b]`), which the
        literal toasts above would show as typed."""
        keys = sorted(
            {
                key_display(key)
                for key, active in self.active_bindings.items()
                if active.binding.action in ("quit", "app.quit")
            },
            key=len,
        )  # q before ctrl+q
        if keys:
            self.notify(f"Press {' or '.join(keys)} to quit", title="Do you want to quit?")

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen (the current directory, else the temporary one;
        tui/screenshot.py) and say where. It writes a file, so never in read-only mode.
        (Textual's own delivery says where in markup.)"""
        if self.read_only:
            self.notify("read-only: screenshot refused", severity="warning")
            return
        saved, told = screenshot.save(self, filename, path)
        self.notify(told, title="screenshot", severity="information" if saved else "error", timeout=8)

    # --- what may run ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _ACTING and self.read_only:
            return False
        if action in _REPLAY and self.replay is None:
            return False
        if action == "suspend_process" and self.read_only:
            return False
        if action in ("rollback", "undo_rollback") and not self.rollback_control.available():
            return False
        return not (
            self._main_screen is not None
            and self.screen is not self._main_screen
            and action not in _ANY_SCREEN
            and action in _OURS
        )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand("Theme", "Choose a theme", self.action_change_theme)
        yield SystemCommand("Next theme", "Switch to the next ebpftop theme", self.action_cycle_theme)
        yield SystemCommand("Help", "Every key and what it does", self.action_help)
        yield SystemCommand(
            "Pause / resume", "Freeze the display; collection continues", self.action_toggle_pause
        )
        yield SystemCommand(
            "Own cost", "ebpftop's CPU, memory, terminal output, losses, BPF programs", self.action_own_cost
        )
        if not self.read_only:
            yield SystemCommand(
                "Add incident marker", "Ask for a text, confirm, audit, publish", self.action_marker
            )
            yield SystemCommand(
                "Screenshot",
                "Save an SVG of the screen in the current directory (else the temporary one)",
                lambda: self.set_timer(0.1, self.action_screenshot),
            )
        yield SystemCommand("Quit", "Quit ebpftop", self.action_quit)

    def action_suspend_process(self) -> None:
        if self.read_only:
            self.notify("read-only: suspend is disabled", severity="warning")
            return
        super().action_suspend_process()

    # Textual types suspend() by its @contextmanager implementation (a private class);
    # this returns that same manager, or raises
    def suspend(self) -> AbstractContextManager[None]:  # type: ignore[override]
        if self.read_only:
            raise SuspendNotSupported("read-only: suspend is disabled")
        return super().suspend()

    # --- view actions ------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_own_cost(self) -> None:
        if isinstance(self.screen, OwnCostScreen):
            return
        screen = OwnCostScreen(find_selfcost(self.runtime), read_only=self.read_only)
        screen.cost = self._own_cost()
        self.push_screen(screen)

    def _own_cost(self) -> OwnCost:
        store = self.runtime.store
        return own_cost(store.latest("selfcost"), store.latest("flows"), store.latest("profiles"))

    def _show_own_cost(self) -> None:
        """The own-cost screen, when open, follows every selfcost sample."""
        if isinstance(self.screen, OwnCostScreen):
            self.screen.show(self._own_cost())

    def action_toggle_pause(self) -> None:
        if self.replay is not None:
            self.replay.toggle_pause()
            self._draw_header()
            return
        self.paused = not self.paused

    def action_focus_pane(self, number: int) -> None:
        if 1 <= number <= len(self._order):
            self._order[number - 1].focus()

    def on_trace_selected(self, message: Any) -> None:
        """An exemplar trace_id chosen in the Canary pane: the Profiles pane follows it."""
        pane = self._panes.get("profiles")
        if pane is not None and hasattr(pane, "follow_trace"):
            pane.follow_trace(message.trace_id, message.service, getattr(message, "at", None))

    def action_cycle_theme(self) -> None:
        self.theme = next_theme(self.theme)
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_replay_step(self, delta: int) -> None:
        if self.replay is not None:
            self.replay.step(delta)
            self._draw_header()

    def action_replay_slower(self) -> None:
        if self.replay is not None:
            self.replay.slower()
            self._draw_header()

    def action_replay_faster(self) -> None:
        if self.replay is not None:
            self.replay.faster()
            self._draw_header()

    # --- actions that change the world: always through the one action path ---------

    def act(self, request: ActionRequest) -> None:
        """Every action key ends here (panes too): refused read-only, else prepared,
        confirmed and run through the gate, reported (tui/action_path.py)."""
        self.action_path.start(request)

    def action_marker(self) -> None:
        self.act(marker_request(self.runtime.bus, MARKER_MAX))

    def action_rollback(self) -> None:
        self.act(rollback_request(self.rollback_control))

    def action_undo_rollback(self) -> None:
        self.act(undo_request(self.rollback_control))

    def _alarms(self) -> tuple[Alarm, ...]:
        # The rollout source has no pane of its own (the Canary pane shows it beside the
        # verdict), so its data alarms (a rollback a reload undid) join the panes' here.
        store = self.runtime.store
        rollout = store.latest("rollout")
        extra = data_alarms(rollout, store.history("rollout")) if rollout is not None else ()
        return super()._alarms() + extra

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Any worker that dies of an error says so (toast and log) instead of taking
        the dashboard down or vanishing; an action's is also audited when the gate
        never saw it (tui/action_path.py)."""
        worker = event.worker
        if event.state is WorkerState.ERROR:
            error = worker.error
            log.error("worker %s failed", worker.name, exc_info=error)
            self.notify(
                f"{worker.name or 'a background task'} failed: {clean(_describe(error), 300)}",
                title="internal error",
                severity="error",
                timeout=20,
            )
            if worker.group == ACTION_GROUP and error is not None:
                await self.action_path.worker_failed(worker, error)
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            self.action_path.worker_done(worker)

    # --- rules that outlive the dashboard ------------------------------------------

    def _redraw_canary(self) -> None:
        """The auto-rollback state line changed (a paused display stays as it was; the
        countdown dialog still shows)."""
        pane = self._panes.get("canary")
        if not self.paused and isinstance(pane, CanaryPane) and pane.is_attached:
            control = self.rollback_control
            pane.redraw(
                auto_rollback=control.status_line(), rollback_key=control.available() and not self.read_only
            )

    def _tell_enforced(self, snap: Snapshot) -> None:
        """Every start says which allow/deny rules are enforcing from before."""
        self._enforced_told = True
        if self.replay is not None:
            return
        lines = enforced(self.runtime.store, self.now())
        if lines:
            shown = "\n".join(clean(line, 200) for line in lines[:6])
            more = f"\n… and {len(lines) - 6} more (Rules pane)" if len(lines) > 6 else ""
            self.notify(shown + more, title=f"{len(lines)} rule(s) enforcing", severity="warning", timeout=20)

    async def action_quit(self) -> None:
        """Quit; when allow/deny rules stay enforced, say which and ask keep/remove."""
        lines = [] if self.read_only or self.replay is not None else enforced(self.runtime.store, self.now())
        if not lines:
            self.exit()
            return
        remove = remove_enforced_request(self.settings, self.runtime.store)
        self.run_worker(
            ask_and_quit(self, self.action_path, lines, remove),
            exclusive=True,
            group=ACTION_GROUP,
            name="quit",
            exit_on_error=False,
        )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
