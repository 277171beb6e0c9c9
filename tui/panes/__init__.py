"""The dashboard's widgets: the host header and one pane per source."""

from __future__ import annotations

from .canary import CanaryPane
from .flows import FlowsPane
from .profiles import ProfilesPane
from .rules import RulesPane

# In focus-key order (1-4).
PANES = (FlowsPane, RulesPane, CanaryPane, ProfilesPane)

__all__ = ["PANES", "FlowsPane", "RulesPane", "CanaryPane", "ProfilesPane"]
