"""The canary payload: per service, each variant's numbers, the verdict and its evidence.

This is what the pane draws and what `ebpftop snapshot --json` prints. Every number that
could not be measured is None ("no data"), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ebpftop.core.model import register_payload

from .exemplars import Exemplar
from .verdict import MetricVerdict, Verdict


@dataclass(frozen=True)
class Bucket:
    le: str  # as Prometheus writes it, "+Inf" included
    count: float | None  # requests in the window at or below `le`


@dataclass(frozen=True)
class VariantMetrics:
    variant: str  # the label value, e.g. "canary"
    p99_s: float | None = None
    error_ratio: float | None = None  # 5xx / all, 0..1
    rps: float | None = None
    requests: float | None = None  # in the window, from the histogram
    buckets: tuple[Bucket, ...] = ()


@dataclass(frozen=True)
class DriftTest:
    """The two-sample test between the canary and stable latency histograms."""

    test: str
    statistic: float | None = None
    dof: int | None = None
    p_value: float | None = None
    effect_size: float | None = None
    effect_name: str = "Cramér's V"
    bins: int = 0  # latency bins compared, after pooling sparse ones
    n_canary: float | None = None
    n_stable: float | None = None
    note: str = ""  # why there is no result


@dataclass(frozen=True)
class ServiceCanary:
    name: str
    verdict: Verdict
    reason: str
    metrics: tuple[MetricVerdict, ...]
    canary: VariantMetrics
    stable: VariantMetrics
    drift: DriftTest
    exemplars: tuple[Exemplar, ...] = ()
    variant_label: str = ""  # the label that told the variants apart ("" = none found)
    window: str = ""
    evaluated_at: float | None = None  # evaluation time of these numbers (wall clock)
    stale: bool = False  # this sample failed; the numbers are from `evaluated_at`
    warnings: tuple[str, ...] = ()  # what Prometheus warned about
    errors: tuple[str, ...] = ()  # queries that failed this sample
    queries: dict[str, str] = field(default_factory=dict)  # the PromQL run, e.g. "canary.p99"


@dataclass(frozen=True)
class CanaryData:
    prometheus_url: str
    services: tuple[ServiceCanary, ...]


register_payload("canary", CanaryData)
