"""Canary verdicts: per metric and overall, with the numbers that led to them.

A breach fails only after `persist` consecutive evaluations (WARN until then); the
distribution test only ever warns. Evaluations replayed from Prometheus history (at start,
after a gap) go through the same `Evaluator` and are counted apart, so a verdict says how
many of its evaluations are history. The rules: collectors/canary/README.md ("Verdicts").
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .stats import ChiSquare


class Verdict(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Thresholds:
    p99_max_s: float = 1.2
    """The canary's p99 latency must stay at or below this many seconds."""
    error_ratio_max: float = 0.005
    """The canary's 5xx ratio must stay at or below this (0.005 = 0.5%)."""
    p99_ratio_max: float = 1.2
    """Canary p99 divided by stable p99 must stay at or below this."""
    persist: int = 3
    """Consecutive breaching evaluations before a metric fails."""
    min_requests: float = 20.0
    """Fewer canary requests than this in the window is too little to judge."""
    alpha: float = 0.01
    """Significance level of the distribution test."""
    min_effect: float = 0.1
    """Cramér's V below this is a difference too small to warn about."""


@dataclass(frozen=True)
class MetricVerdict:
    name: str  # p99, error_ratio, p99_ratio, drift
    verdict: Verdict
    value: float | None
    threshold: float | None
    unit: str  # "s", "ratio" (0..1), "x" (times stable), "V" (Cramér's V)
    breaches: int = 0  # consecutive breaching evaluations so far
    reason: str = ""
    from_history: int = 0  # of the breaches the verdict counts, how many were read from history
    persist: int = 0  # breaches in a row that fail it (0: not counted, as drift)


@dataclass(frozen=True)
class Measured:
    """One evaluation's inputs; None is "no data", never zero."""

    canary_p99_s: float | None
    stable_p99_s: float | None
    canary_error_ratio: float | None
    canary_requests: float | None  # in the window; None when unknown
    drift: ChiSquare | None
    drift_note: str = ""
    problems: dict[str, str] = field(default_factory=dict)
    """Impossible numbers (vet.py), keyed "canary.p99" etc.; their values are None here."""


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reason: str
    metrics: tuple[MetricVerdict, ...]


def p99_ratio(canary: float | None, stable: float | None) -> float | None:
    if canary is None or stable is None or stable <= 0:
        return None
    return canary / stable


def fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.3g} s"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit == "x":
        return f"{value:.3g}x"
    return f"{value:.3g}"


_LABEL = {"p99": "canary p99", "error_ratio": "canary 5xx ratio", "p99_ratio": "p99 canary/stable"}


class Evaluator:
    """Keeps the breach counts of one service across evaluations."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._streak: dict[str, int] = {}
        # per metric, the newest `persist` breaches: the time of those read from history,
        # None for the live ones
        self._recent: dict[str, deque[float | None]] = {}

    def reset(self) -> None:
        """Forget the streaks: a gap longer than the persistence window breaks them."""
        self._streak.clear()
        self._recent.clear()

    def _from_history(self, name: str) -> int:
        return sum(t is not None for t in self._recent.get(name, ()))

    def history_times(self) -> tuple[float, ...]:
        """When the evaluations read from history that the verdicts still count were."""
        return tuple(sorted({t for recent in self._recent.values() for t in recent if t is not None}))

    def _threshold_metric(
        self, name: str, value: float | None, limit: float, unit: str, no_data: str, history_at: float | None
    ) -> MetricVerdict:
        label = _LABEL[name]
        streak = self._streak.get(name, 0)
        need = max(1, self.thresholds.persist)
        if value is None:
            past = self._from_history(name)
            return MetricVerdict(name, Verdict.NO_DATA, None, limit, unit, streak, no_data, past, need)
        if value <= limit:
            self._streak[name] = 0
            self._recent.pop(name, None)
            reason = f"{label} {fmt_value(value, unit)} <= {fmt_value(limit, unit)}"
            return MetricVerdict(name, Verdict.PASS, value, limit, unit, 0, reason, persist=need)
        streak = self._streak[name] = streak + 1
        self._recent.setdefault(name, deque(maxlen=need)).append(history_at)
        verdict = Verdict.FAIL if streak >= need else Verdict.WARN
        past = self._from_history(name)
        reason = (
            f"{label} {fmt_value(value, unit)} > {fmt_value(limit, unit)}"
            f" for {min(streak, need)}/{need} evaluations" + (f" ({past} from history)" if past else "")
        )
        return MetricVerdict(name, verdict, value, limit, unit, streak, reason, past, need)

    def _drift(self, m: Measured) -> MetricVerdict:
        t = self.thresholds
        d = m.drift
        if d is None:
            return MetricVerdict(
                "drift",
                Verdict.NO_DATA,
                None,
                t.min_effect,
                "V",
                0,
                m.drift_note or "distribution test not possible",
            )
        shifted = d.p_value < t.alpha and d.cramers_v >= t.min_effect
        summary = (
            f"{d.test}: chi2={d.statistic:.4g}, df={d.dof}, p={d.p_value:.3g}, Cramér's V={d.cramers_v:.3g}"
        )
        if shifted:
            return MetricVerdict(
                "drift",
                Verdict.WARN,
                d.cramers_v,
                t.min_effect,
                "V",
                0,
                f"latency distributions differ ({summary})",
            )
        return MetricVerdict(
            "drift", Verdict.PASS, d.cramers_v, t.min_effect, "V", 0, f"no material difference ({summary})"
        )

    def evaluate(self, m: Measured, *, history_at: float | None = None) -> Assessment:
        """Judge one evaluation; `history_at`: its time, when its numbers were read from
        Prometheus history (a range query) rather than live."""
        t = self.thresholds
        few = m.canary_requests is not None and m.canary_requests < t.min_requests
        if few:
            note = f"only {m.canary_requests:.0f} canary requests in the window (need {t.min_requests:.0f})"
            p99, ratio, errors = None, None, None
        else:
            note = ""
            p99 = m.canary_p99_s
            ratio = p99_ratio(m.canary_p99_s, m.stable_p99_s)
            errors = m.canary_error_ratio
        bad = m.problems
        canary_p99_bad = bad.get("canary.p99", "")
        if canary_p99_bad or bad.get("stable.p99"):
            ratio_note = canary_p99_bad or bad["stable.p99"]
        elif not note and ratio is None and p99 is not None:
            ratio_note = "no stable p99 to compare with"
        else:
            ratio_note = note or "no canary p99"
        metrics = (
            self._threshold_metric(
                "p99", p99, t.p99_max_s, "s", canary_p99_bad or note or "no canary latency data", history_at
            ),
            self._threshold_metric(
                "error_ratio",
                errors,
                t.error_ratio_max,
                "ratio",
                bad.get("canary.error_ratio") or note or "no canary request data",
                history_at,
            ),
            self._threshold_metric("p99_ratio", ratio, t.p99_ratio_max, "x", ratio_note, history_at),
            self._drift(m),
        )
        return overall(metrics, tuple(bad.values()))


def overall(metrics: tuple[MetricVerdict, ...], problems: tuple[str, ...] = ()) -> Assessment:
    """FAIL if any fails, else WARN if any warns, else NO_DATA if a threshold metric has
    no data or a number was impossible (a pass needs every threshold checked on
    believable numbers), else PASS. Impossible numbers are named in every reason."""
    by = {v: [m for m in metrics if m.verdict is v] for v in Verdict}
    problems = tuple(dict.fromkeys(problems))
    for verdict in (Verdict.FAIL, Verdict.WARN):
        if by[verdict]:
            return Assessment(verdict, "; ".join((*(m.reason for m in by[verdict]), *problems)), metrics)
    missing = [
        f"{m.name}: {m.reason}" for m in by[Verdict.NO_DATA] if m.name != "drift" and m.reason not in problems
    ]
    if missing or problems:
        return Assessment(Verdict.NO_DATA, "; ".join((*problems, *missing)), metrics)
    return Assessment(Verdict.PASS, "all metrics within thresholds", metrics)
