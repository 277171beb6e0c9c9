"""Canary pane: canary vs stable and the verdict (the canary engineer fills `render_body`)."""

from __future__ import annotations

from .base import SourcePane


class CanaryPane(SourcePane):
    source = "canary"
    title = "Canary"
    number = 3
    ABOUT = "p99 latency, error rate and throughput per variant, verdict, rollout weight and phase."
