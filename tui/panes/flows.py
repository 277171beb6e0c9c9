"""Flows pane: top flows by rate (the flows engineer fills `render_body`)."""

from __future__ import annotations

from .base import SourcePane


class FlowsPane(SourcePane):
    source = "flows"
    title = "Flows"
    number = 1
    ABOUT = "Top flows by rate: 5-tuple, bytes, packets, retransmits, connect latency, process."
