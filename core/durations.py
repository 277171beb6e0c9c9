"""Prometheus durations ("1m", "30s", "1h30m"): the grammar shared by the settings check
for the canary window and the canary's own per-service validation."""

from __future__ import annotations

import re

DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+\Z")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(text: str) -> float:
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(text))


def check_window(value: str) -> str | None:
    """Settings check for a Prometheus window: None when it is a positive duration."""
    if DURATION.match(value) and duration_seconds(value) > 0:
        return None
    return "must be a Prometheus duration like 1m, 30s or 1h30m"
