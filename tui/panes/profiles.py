"""Profiles pane: CPU samples grouped by tags."""

from __future__ import annotations

from .base import SourcePane


class ProfilesPane(SourcePane):
    source = "profiles"
    title = "Profiles"
    number = 4
    ABOUT = "CPU profile samples grouped by service, environment, trace_id and process, with top frames."
