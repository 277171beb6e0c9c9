"""The canary payload: per service, each variant's numbers, the verdict and its evidence;
and its alarms (a failing or warning canary).

This is what the pane draws and what `ebpftop snapshot --json` prints. Every number that
could not be measured is None ("no data"), never zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ebpftop.core.alarms import Alarm, register_alarms
from ebpftop.core.model import Snapshot, register_payload

from .exemplars import Exemplar
from .verdict import MetricVerdict, Verdict, fmt_value


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
    # when the evaluations read from Prometheus history (at start, after a gap) that the
    # verdict still counts as breaches were; each metric's `from_history` says how many of its own
    history_at: tuple[float, ...] = ()
    history_note: str = ""  # why history could not be read at this sample, when it could not
    warnings: tuple[str, ...] = ()  # what Prometheus warned about
    errors: tuple[str, ...] = ()  # queries that failed this sample
    queries: dict[str, str] = field(default_factory=dict)  # the PromQL run, e.g. "canary.p99"


@dataclass(frozen=True)
class CanaryData:
    prometheus_url: str
    services: tuple[ServiceCanary, ...]


register_payload("canary", CanaryData)


_SHORT = {  # in the order named: latency, then errors
    "p99": "p99 {}",
    "p99_ratio": "p99 {} stable",
    "error_ratio": "5xx {}",
    "drift": "latency distribution differs (V {})",
}


def _count(m: MetricVerdict) -> str:
    if not m.persist:  # recorded before verdicts carried it
        return ""
    past = f", {m.from_history} from history" if m.from_history else ""
    return f" ({min(m.breaches, m.persist)}/{m.persist}{past})"


def breaches(svc: ServiceCanary) -> str:
    """Every breach of `svc` in a few words, worst first, with its persistence:
    "p99 22.8x stable, 5xx 5.1% (3/3)"; the distribution test only when nothing else
    warns; "" when nothing does."""
    by_name = {m.name: m for m in svc.metrics}
    found = [
        m
        for v in (Verdict.FAIL, Verdict.WARN)
        for name in _SHORT
        if (m := by_name.get(name)) and m.verdict is v
    ]
    found = [m for m in found if m.name != "drift"] or found
    if not found:
        return ""
    words = [_SHORT[m.name].format(fmt_value(m.value, m.unit) if m.value is not None else "?") for m in found]
    for i in range(1, len(found)):  # "p99 2.5 s, 5.4x stable": one p99 named once
        if (found[i - 1].name, found[i].name) == ("p99", "p99_ratio"):
            words[i] = words[i].removeprefix("p99 ")
    counts = [_count(m) for m in found]
    if len(set(counts)) == 1:  # one count for all, said once
        return ", ".join(words) + counts[0]
    return ", ".join(w + c for w, c in zip(words, counts, strict=True))


def canary_alarms(latest: Snapshot, history: Sequence[Snapshot]) -> list[Alarm]:
    """A service whose canary fails (error) or is close to (warning), naming every
    breach compactly (the header is the line a wall display shows for sure; the whole
    reason is in the detail and the pane)."""
    out: list[Alarm] = []
    data = latest.data
    for svc in data.services if isinstance(data, CanaryData) else ():
        if svc.verdict not in (Verdict.FAIL, Verdict.WARN):
            continue
        why = breaches(svc) or svc.reason.removeprefix("canary ")
        text = f"canary {svc.verdict.value.upper()} {svc.name}" + (f": {why}" if why else "")
        failing = [m.name for m in svc.metrics if m.verdict is svc.verdict]
        detail = {"service": svc.name, "verdict": svc.verdict.value, "reason": svc.reason, "metrics": failing}
        out.append(
            Alarm(
                latest.source,
                "error" if svc.verdict is Verdict.FAIL else "warning",
                text,
                "canary_verdict",
                detail,
            )
        )
    return out


register_alarms("canary", canary_alarms)
