"""The distribution test against reference values.

The reference numbers were computed once with SciPy 1.17.1 (scipy.stats.chi2.sf,
scipy.special.gammaincc, scipy.stats.chi2_contingency(correction=False) and
scipy.stats.contingency.association(method="cramer")) and are recorded here, so the
pure-Python implementation is checked without SciPy installed.
"""

from __future__ import annotations

import math

import pytest

from ebpftop.collectors.canary.stats import (
    chi2_sf,
    chi_square_homogeneity,
    gammaincc,
    per_bucket,
    pool,
)

# (statistic, dof, scipy.stats.chi2.sf(statistic, dof))
CHI2_SF = [
    (3.841458820694124, 1, 0.04999999999999989),
    (5.991464547107979, 2, 0.05000000000000007),
    (0.5, 1, 0.47950012218695337),
    (10.0, 3, 0.01856613546304325),
    (25.0, 10, 0.005345505487134069),
    (1e-06, 4, 0.999999999999875),
    (120.0, 50, 1.0958807112599678e-07),
    (300.0, 7, 6.0496418565564134e-61),
    (7.5, 7, 0.37873690604821353),
]

# (a, x, scipy.special.gammaincc(a, x)) - both branches (series and continued fraction)
GAMMAINCC = [
    (0.5, 0.1, 0.6547208460185768),
    (2.5, 1.0, 0.8491450360846096),
    (2.5, 10.0, 0.0012497305630313773),
    (10.0, 9.0, 0.5874082443319417),
    (100.0, 120.0, 0.027863739890520652),
]


@pytest.mark.parametrize("stat,dof,expected", CHI2_SF)
def test_chi2_survival_matches_scipy(stat, dof, expected):
    assert chi2_sf(stat, dof) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("a,x,expected", GAMMAINCC)
def test_upper_incomplete_gamma_matches_scipy(a, x, expected):
    assert gammaincc(a, x) == pytest.approx(expected, rel=1e-10)


def test_gamma_edges():
    assert gammaincc(3.0, 0.0) == 1.0
    assert gammaincc(3.0, math.inf) == 0.0
    with pytest.raises(ValueError):
        gammaincc(0.0, 1.0)
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


# (canary row, stable row, chi2, p, dof, Cramér's V) from scipy on the same table
# after dropping empty columns; no column needs pooling in these.
TABLES = [
    (
        [50, 30, 15, 4, 1, 0, 0],
        [10, 20, 20, 20, 10, 20, 0],
        67.41125541125541,
        3.539398692557897e-13,
        5,
        0.5805654804208368,
    ),
    (
        [400, 300, 200, 80, 20],
        [100, 150, 300, 300, 150],
        476.7801857585139,
        7.0405128482236156e-102,
        4,
        0.4882520792370033,
    ),
]


@pytest.mark.parametrize("a,b,chi2,p,dof,v", TABLES)
def test_chi_square_homogeneity_matches_scipy(a, b, chi2, p, dof, v):
    r = chi_square_homogeneity(a, b)
    assert r is not None
    assert r.statistic == pytest.approx(chi2, rel=1e-12)
    assert r.p_value == pytest.approx(p, rel=1e-8)
    assert r.dof == dof
    assert r.cramers_v == pytest.approx(v, rel=1e-12)
    assert (r.n_a, r.n_b) == (sum(a), sum(b))
    assert r.test == "chi-square test of homogeneity"


def test_sparse_tail_bucket_is_pooled_before_testing():
    # the last column (4, 5) expects 4.5 per row: below Cochran's 5, so it joins the
    # one before; scipy on the pooled table [[200,120,60,20],[190,125,62,23]] gives:
    a, b = [200, 120, 60, 16, 4], [190, 125, 62, 18, 5]
    assert pool(a, b) == ([200, 120, 60, 20], [190, 125, 62, 23])
    r = chi_square_homogeneity(a, b)
    assert r.bins == 4 and r.dof == 3
    assert r.statistic == pytest.approx(0.6005402835640841, rel=1e-12)
    assert r.p_value == pytest.approx(0.8963086766227645, rel=1e-10)
    assert r.cramers_v == pytest.approx(0.02739845532972808, rel=1e-12)


def test_sparse_leading_buckets_are_pooled_forward():
    # pooled to [[53, 30], [43, 45]]; scipy: chi2 3.8988011705914536, p 0.04832057634145636
    a, b = [1, 2, 50, 30], [0, 3, 40, 45]
    assert pool(a, b) == ([53, 30], [43, 45])
    r = chi_square_homogeneity(a, b)
    assert r.statistic == pytest.approx(3.8988011705914536, rel=1e-12)
    assert r.p_value == pytest.approx(0.04832057634145636, rel=1e-10)
    assert r.cramers_v == pytest.approx(0.15099671137334103, rel=1e-12)


def test_identical_shapes_give_zero_statistic_and_p_one():
    r = chi_square_homogeneity([100, 50, 10], [200, 100, 20])
    assert r.statistic == pytest.approx(0.0, abs=1e-12)
    assert r.p_value == pytest.approx(1.0)
    assert r.cramers_v == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "a,b",
    [
        ([0, 0, 0], [5, 5, 5]),  # canary saw nothing
        ([3, 1], [2, 2]),  # too few to fill two bins
        ([], []),
    ],
)
def test_nothing_to_test_is_none_not_a_number(a, b):
    assert chi_square_homogeneity(a, b) is None


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError):
        chi_square_homogeneity([1, float("nan")], [1, 2])
    with pytest.raises(ValueError):
        chi_square_homogeneity([1, -2], [1, 2])
    with pytest.raises(ValueError):
        pool([1, 2], [1])


def test_per_bucket_from_cumulative_clamps_decreases():
    assert per_bucket([10, 30, 30, 45]) == [10, 20, 0, 15]
    # extrapolation in increase() can make a higher bucket a hair lower
    assert per_bucket([10, 9.5, 12]) == [10, 0, 2]


# --- the test as the collector runs it on Prometheus buckets ----------------------------

from ebpftop.collectors.canary.collector import drift_test  # noqa: E402
from ebpftop.collectors.canary.data import Bucket  # noqa: E402


def buckets(pairs):
    return [Bucket(le, c) for le, c in pairs]


def test_drift_compares_on_the_boundaries_both_variants_share():
    # canary has an extra 0.25 boundary and writes "1.0" where stable writes "1"
    canary = buckets([("0.1", 40), ("0.25", 70), ("0.5", 100), ("1.0", 140), ("+Inf", 150)])
    stable = buckets([("0.1", 200), ("0.5", 300), ("1", 330), ("+Inf", 340)])
    d, chi = drift_test(canary, stable)
    ref = chi_square_homogeneity([40, 60, 40, 10], [200, 100, 30, 10])
    assert chi == ref
    assert (d.statistic, d.p_value, d.effect_size, d.dof) == (
        ref.statistic,
        ref.p_value,
        ref.cramers_v,
        ref.dof,
    )
    assert (d.n_canary, d.n_stable) == (150, 340)


@pytest.mark.parametrize(
    "canary,stable,note",
    [
        ([("0.1", 5), ("0.5", 9)], [("0.1", 5), ("0.5", 9)], "no +Inf bucket"),
        ([("0.1", None), ("+Inf", 9)], [("0.1", 5), ("+Inf", 9)], "a latency bucket has no data"),
        ([], [("+Inf", 9)], "no latency buckets shared"),
        ([("0.1", 1), ("+Inf", 2)], [("0.1", 1), ("+Inf", 3)], "too few requests"),
    ],
)
def test_drift_says_why_there_is_no_result(canary, stable, note):
    d, chi = drift_test(buckets(canary), buckets(stable))
    assert chi is None and d.statistic is None and d.p_value is None
    assert note in d.note
