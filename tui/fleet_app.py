"""`ebpftop --fleet URL`: the dashboard's frame (header, keys, themes, kiosk, record and
replay, own cost) around one pane, the fleet. It acts on nothing: the keys that would
(marker, rollback, undo) are not offered, nor 1-4 (one pane, always focused)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Footer

from ebpftop.collectors.fleet.collector import FleetCollector

from .app import EbpftopApp
from .panes.fleet.pane import FleetPane
from .panes.header import HostHeader


class FleetApp(EbpftopApp):
    TITLE = "ebpftop fleet"
    # not offered, and not in the help screen either
    NOT_OFFERED = frozenset({"marker", "rollback", "undo_rollback", "focus_pane"})

    def compose(self) -> ComposeResult:
        self._header = HostHeader()
        yield self._header
        with Container(id="panes", classes="-single"):
            pane = FleetPane()
            fleet = next((c for c in self.runtime.collectors if isinstance(c, FleetCollector)), None)
            # the `/` filter's actuator, handed over once (a replay has no collector: None)
            pane.set_filter = fleet.set_filter if fleet is not None else None
            self._panes[pane.source] = pane
            self._order.append(pane)
            yield pane
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.NOT_OFFERED:  # focus_pane: one pane, always focused
            return False
        return super().check_action(action, parameters)
