"""Enter on a Fleet row: the node's every column beside the fleet's median, why it ranks
where it does, and how to reach it (an ssh command and the agent's address, from the
operator's templates). `y` copies the ssh command (OSC 52: works over SSH in terminals
that allow it). Escape closes."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from ebpftop.collectors.fleet.model import FleetData, FleetNode

from ...screens.detail import DetailScreen
from ...text import plain
from .view import commands, detail_lines


class FleetNodeScreen(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "copy", "Copy ssh command")]

    DEFAULT_CSS = """
    FleetNodeScreen { align: center middle; }
    FleetNodeScreen > VerticalScroll {
        width: 100%; height: 100%; border: round $primary; background: $surface; padding: 0 1;
    }
    FleetNodeScreen .heading { text-style: bold; margin-top: 1; }
    FleetNodeScreen #node-title { color: $accent; text-style: bold; }
    FleetNodeScreen .command { color: $accent; }
    """

    def __init__(self, node: FleetNode, data: FleetData, ssh_template: str, connect_template: str) -> None:
        super().__init__()
        self.node = node
        self.data = data
        self.ssh = commands(ssh_template, node)
        self.connect = commands(connect_template, node)

    def compose(self) -> ComposeResult:
        node = self.node
        box = VerticalScroll(can_focus=False)
        box.border_title = "Node"
        box.border_subtitle = "y copies the ssh command · esc closes"
        width = max(len(label) for label, _ in detail_lines(node, self.data))
        with box:
            yield Static(plain(node.name), id="node-title", markup=False)
            if node.reasons:
                yield Static("why it ranks here", classes="heading", markup=False)
                yield Static(plain("\n".join(node.reasons), "$warning"), id="node-reasons", markup=False)
            yield Static("reach it", classes="heading", markup=False)
            yield Static(
                Content.assemble(("shell on the node:  ", "$text-muted"), plain(self.ssh, "bold")),
                classes="command",
                id="node-ssh",
                markup=False,
            )
            yield Static(
                Content.assemble(("its agent, from here:  ", "$text-muted"), plain(self.connect, "bold")),
                classes="command",
                id="node-connect",
                markup=False,
            )
            yield Static("columns (this node, and the fleet's median)", classes="heading", markup=False)
            yield Static(
                Content("\n").join(
                    Content.assemble((label.ljust(width) + "  ", "$text-muted"), plain(value))
                    for label, value in detail_lines(node, self.data)
                ),
                id="node-columns",
                markup=False,
            )

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.ssh)
        self.notify(f"copied: {self.ssh}", timeout=4)

    def text(self) -> str:
        """What the dialog shows, as plain text (for tests)."""
        return "\n".join(str(w.render()) for w in self.query(Static))
