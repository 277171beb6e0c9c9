"""Two-sample test between canary and stable latency histograms, in plain Python.

Pearson's chi-square test of homogeneity on the 2 x k table of bucket counts (buckets
pooled until every expected count is at least 5), its p-value (regularised upper
incomplete gamma, Numerical Recipes 6.2) and Cramér's V. SciPy reference values are in
tests/test_canary_stats.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TEST_NAME = "chi-square test of homogeneity"
MIN_EXPECTED = 5.0

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    dof: int
    p_value: float
    cramers_v: float
    bins: int  # latency bins after pooling
    n_a: float
    n_b: float
    test: str = TEST_NAME


def _series_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) by its series (x < a + 1)."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _continued_fraction_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) by Lentz's continued fraction."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gammaincc(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0, x >= 0."""
    if a <= 0 or x < 0 or math.isnan(x):
        raise ValueError(f"gammaincc needs a > 0 and x >= 0, got a={a}, x={x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _series_p(a, x))
    return min(1.0, _continued_fraction_q(a, x))


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-square with `dof` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    return gammaincc(dof / 2.0, max(0.0, statistic) / 2.0)


def per_bucket(cumulative: Sequence[float]) -> list[float]:
    """Cumulative bucket counts (ascending `le`) -> count in each bucket.

    A decrease (counter resets and extrapolation in `increase()` can produce one) is
    clamped to zero rather than turned into a negative count.
    """
    out: list[float] = []
    prev = 0.0
    for c in cumulative:
        out.append(max(0.0, c - prev))
        prev = max(prev, c)
    return out


def pool(
    a: Sequence[float], b: Sequence[float], min_expected: float = MIN_EXPECTED
) -> tuple[list[float], list[float]]:
    """Merge adjacent bins left to right until each bin's expected count in both rows is
    at least `min_expected`; a short tail joins the last full bin."""
    if len(a) != len(b):
        raise ValueError(f"bucket lists differ in length: {len(a)} vs {len(b)}")
    na, nb = sum(a), sum(b)
    n = na + nb
    if n <= 0 or na <= 0 or nb <= 0:
        return [], []
    # expected count of the smaller row in a column of total t is t * min(na, nb) / n
    need = min_expected * n / min(na, nb)
    pa: list[float] = []
    pb: list[float] = []
    acc_a = acc_b = 0.0
    for x, y in zip(a, b, strict=True):
        acc_a += x
        acc_b += y
        if acc_a + acc_b >= need:
            pa.append(acc_a)
            pb.append(acc_b)
            acc_a = acc_b = 0.0
    if acc_a + acc_b > 0:
        if pa:
            pa[-1] += acc_a
            pb[-1] += acc_b
        else:
            pa.append(acc_a)
            pb.append(acc_b)
    return pa, pb


def chi_square_homogeneity(
    a: Sequence[float], b: Sequence[float], *, min_expected: float = MIN_EXPECTED
) -> ChiSquare | None:
    """The test on two rows of per-bucket counts (same bucket boundaries).

    None when there is nothing to test: an empty row, or fewer than two bins left after
    pooling (too few requests to tell distributions apart).
    """
    for row in (a, b):
        for x in row:
            if not math.isfinite(x) or x < 0:
                raise ValueError(f"bucket counts must be finite and >= 0, got {x!r}")
    pa, pb = pool(a, b, min_expected)
    if len(pa) < 2:
        return None
    na, nb = sum(pa), sum(pb)
    n = na + nb
    stat = 0.0
    for x, y in zip(pa, pb, strict=True):
        col = x + y
        for observed, row_total in ((x, na), (y, nb)):
            expected = row_total * col / n
            stat += (observed - expected) ** 2 / expected
    dof = len(pa) - 1
    return ChiSquare(
        statistic=stat,
        dof=dof,
        p_value=chi2_sf(stat, dof),
        cramers_v=math.sqrt(stat / n),
        bins=len(pa),
        n_a=na,
        n_b=nb,
    )
