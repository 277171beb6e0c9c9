"""The dashboard's widgets: the host header and one pane per source."""

from __future__ import annotations

from .canary.pane import CanaryPane
from .flows.pane import FlowsPane
from .profiles.pane import ProfilesPane
from .rules.pane import RulesPane

# In focus-key order (1-4).
PANES = (FlowsPane, RulesPane, CanaryPane, ProfilesPane)

__all__ = ["PANES", "CanaryPane", "FlowsPane", "ProfilesPane", "RulesPane"]
