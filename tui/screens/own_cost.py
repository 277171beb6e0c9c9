"""`$`: ebpftop's own cost over the dashboard (process, terminal, losses, BPF programs).

Opening it turns the kernel's BPF run-time stats on through the selfcost collector;
closing it (or quitting with it open) turns them off. The app feeds it, as it feeds the
panes: it never reads the store.

Read-only (kiosk, replay) it opens too: it changes nothing that outlives it, and the
stats switch is an fd the kernel closes with the process. But a wall display is
unattended, and the stats cost every program on the host a little on every run, so
there it closes itself after `KIOSK_CLOSE_S`.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.selfcost.model import BpfStats
from ebpftop.collectors.selfcost.summary import OwnCost

from ..text import plain
from .detail import DetailScreen
from .own_cost_view import own_cost_lines

KIOSK_CLOSE_S = 120.0


class StatsSwitch(Protocol):
    """The selfcost collector's side: turn the kernel stats on/off, say how they are."""

    def stats_on(self) -> bool: ...

    def stats_off(self) -> None: ...

    def stats_state(self) -> BpfStats: ...


class OwnCostScreen(DetailScreen):
    # Esc, q, Enter and the scroll keys come from DetailScreen; `$` closes it as it opened it.
    BINDINGS: ClassVar[list[BindingType]] = [Binding("dollar_sign", "close", "Close", show=False)]

    DEFAULT_CSS = """
    OwnCostScreen { align: center middle; }
    OwnCostScreen > VerticalScroll {
        width: 84; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    OwnCostScreen #own-cost-body { width: 1fr; height: auto; }
    """

    def __init__(
        self, switch: StatsSwitch | None, *, read_only: bool, close_after: float | None = None
    ) -> None:
        super().__init__()
        self.switch = switch  # None in a replay: nothing to switch, the recording says
        self.read_only = read_only
        self.close_after = KIOSK_CLOSE_S if close_after is None else close_after
        self.cost: OwnCost | None = None
        self.text = ""  # what the body says, as plain text (tests)
        self._holding = False  # this screen turned the stats on and has not let go
        self._ready = False  # composed and mounted: the body can be drawn

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        scroll.border_title = "Own cost"
        scroll.border_subtitle = "esc closes"
        with scroll:
            yield Static(id="own-cost-body", markup=False)

    def on_mount(self) -> None:
        if self.switch is not None:
            self._holding = True
            self.switch.stats_on()
            if self.read_only:
                self.set_timer(self.close_after, self._expire, name="kiosk close")
        self._ready = True
        if self.cost is not None:
            self.show(self.cost)

    def on_unmount(self) -> None:
        self._stats_off()  # also when the app quits with it open

    def _stats_off(self) -> None:
        if self.switch is not None and self._holding:
            self._holding = False
            self.switch.stats_off()

    def show(self, cost: OwnCost) -> None:
        """The latest own cost (the app calls this with every selfcost sample)."""
        self.cost = cost
        if not self._ready:
            return  # on_mount draws it
        switch = self.switch.stats_state() if self.switch is not None else None
        lines = own_cost_lines(cost, switch, read_only=self.read_only, close_after=self.close_after)
        body = Content("\n").join(
            Content("").join(plain(part) if isinstance(part, str) else plain(*part) for part in line)
            for line in lines
        )
        self.text = body.plain
        self.query_one("#own-cost-body", Static).update(body)

    def _expire(self) -> None:
        if self.is_current:
            self.action_close()
        else:  # a dialog above it (the palette): close once it is gone
            self.set_timer(1.0, self._expire, name="kiosk close")

    def action_close(self) -> None:
        self._stats_off()  # now, not when Textual gets round to unmounting it
        super().action_close()
