"""Rules pane: policy rules and their hit counters."""

from __future__ import annotations

from .base import SourcePane


class RulesPane(SourcePane):
    source = "rules"
    title = "Rules"
    number = 2
    ABOUT = "Every policy rule with packets, bytes, rate and last hit."
