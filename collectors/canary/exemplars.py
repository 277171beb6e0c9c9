"""Exemplars of the canary's slow requests: the trace ids that lead to profiles.

The slow ones are those in the bucket holding the canary's p99 and above. The cutoff is
that bucket's lower bound, not p99: p99 is interpolated inside the bucket and can sit
above every real request in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .query import QueryError, to_value

MAX_EXEMPLARS = 10
TRACE_LABELS = ("trace_id", "traceID", "traceId", "trace")


@dataclass(frozen=True)
class Exemplar:
    trace_id: str
    value_s: float
    time: float
    bucket: str = ""  # the `le` of the series it was recorded on
    labels: dict[str, str] = field(default_factory=dict)


def parse_exemplars(data: Any, trace_label: str = "trace_id") -> list[Exemplar]:
    """The `data` of /api/v1/query_exemplars -> exemplars that carry a trace id."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise QueryError("bad_response", "exemplar answer is not a list of series")
    names = (trace_label, *[t for t in TRACE_LABELS if t != trace_label])
    out: list[Exemplar] = []
    for series in data:
        if not isinstance(series, dict):
            raise QueryError("bad_response", "exemplar series is not an object")
        series_labels = series.get("seriesLabels")
        series_labels = {} if series_labels is None else series_labels
        items = series.get("exemplars")
        items = [] if items is None else items
        if not isinstance(series_labels, dict) or not isinstance(items, list):
            raise QueryError("bad_response", "exemplar series lacks seriesLabels/exemplars")
        le = str(series_labels.get("le", ""))
        for ex in items:
            if not isinstance(ex, dict):
                raise QueryError("bad_response", "exemplar is not an object")
            labels = ex.get("labels")
            labels = {} if labels is None else labels
            if not isinstance(labels, dict):
                raise QueryError("bad_response", "exemplar labels are not an object")
            trace = next((str(labels[n]) for n in names if labels.get(n)), None)
            value = to_value(ex.get("value"))
            stamp: Any = ex.get("timestamp")  # JSON from Prometheus: anything, checked by float()
            try:
                ts = float(stamp)
            except (TypeError, ValueError):
                raise QueryError("bad_response", "exemplar timestamp is not a number") from None
            if trace is None or value is None:
                continue  # nothing to follow, or no usable latency
            out.append(Exemplar(trace, value, ts, le, {str(k): str(v) for k, v in labels.items()}))
    return out


def slow_cutoff(p99_s: float | None, bounds: list[float], fallback_s: float) -> float:
    """Lower bound of the bucket holding `p99_s` (0 for the first bucket)."""
    if p99_s is None:
        return fallback_s
    below = [le for le in bounds if le < p99_s]
    return max(below) if below else 0.0


def slowest(
    exemplars: list[Exemplar], cutoff_s: float | None, limit: int = MAX_EXEMPLARS
) -> tuple[Exemplar, ...]:
    """Exemplars at or above `cutoff_s`, slowest first, one per trace id."""
    chosen: dict[str, Exemplar] = {}
    for ex in sorted(exemplars, key=lambda e: (-e.value_s, -e.time)):
        if cutoff_s is not None and ex.value_s < cutoff_s:
            continue
        chosen.setdefault(ex.trace_id, ex)
        if len(chosen) >= limit:
            break
    return tuple(chosen.values())
