"""Verdicts: thresholds, persistence of breaches, no data, the drift test's role."""

from __future__ import annotations

import pytest

from ebpftop.collectors.canary.data import Bucket, VariantMetrics
from ebpftop.collectors.canary.stats import chi_square_homogeneity
from ebpftop.collectors.canary.verdict import Evaluator, Measured, Thresholds, Verdict
from ebpftop.collectors.canary.vet import vet

SAME = chi_square_homogeneity([500, 300, 150, 50], [500, 300, 150, 50])
SHIFTED = chi_square_homogeneity([100, 150, 300, 450], [500, 300, 150, 50])


def healthy(**over) -> Measured:
    base = dict(
        canary_p99_s=0.30, stable_p99_s=0.28, canary_error_ratio=0.001, canary_requests=1000.0, drift=SAME
    )
    base.update(over)
    return Measured(**base)


def by_name(assessment):
    return {m.name: m for m in assessment.metrics}


def test_healthy_canary_passes_with_numbers_beside_thresholds():
    a = Evaluator(Thresholds()).evaluate(healthy())
    assert a.verdict is Verdict.PASS
    m = by_name(a)
    assert (m["p99"].value, m["p99"].threshold, m["p99"].unit) == (0.30, 1.2, "s")
    assert (m["error_ratio"].value, m["error_ratio"].threshold) == (0.001, 0.005)
    assert m["p99_ratio"].value == pytest.approx(0.30 / 0.28)
    assert m["p99_ratio"].threshold == 1.2
    assert m["p99"].reason == "canary p99 300 ms <= 1.2 s"
    assert m["drift"].verdict is Verdict.PASS and "chi-square test of homogeneity" in m["drift"].reason


def test_history_counts_like_live_and_the_verdict_says_how_much_of_it_there_is():
    ev = Evaluator(Thresholds(persist=3))
    slow, none = healthy(canary_p99_s=0.9), healthy(canary_p99_s=None)
    ev.evaluate(slow, history_at=10.0)
    ev.evaluate(none, history_at=15.0)  # no data in history neither counts nor resets
    second = by_name(ev.evaluate(slow, history_at=20.0))["p99_ratio"]
    assert (second.verdict, second.breaches, second.from_history) == (Verdict.WARN, 2, 2)
    live = ev.evaluate(slow)
    ratio = by_name(live)["p99_ratio"]
    assert live.verdict is Verdict.FAIL and (ratio.breaches, ratio.from_history) == (3, 2)
    assert ratio.reason == "p99 canary/stable 3.21x > 1.2x for 3/3 evaluations (2 from history)"
    assert ev.history_times() == (10.0, 20.0)  # the breaches counted, not the one without data
    # history read after live breaches (a gap filled) is the newest part of the streak
    ev.evaluate(slow)
    ev.evaluate(slow, history_at=30.0)
    assert by_name(ev.evaluate(slow))["p99_ratio"].from_history == 1
    assert ev.history_times() == (30.0,)  # 10 and 20 slid out of the newest three
    # a pass resets what history contributed too
    ev.evaluate(healthy())
    after = by_name(ev.evaluate(slow))["p99_ratio"]
    assert (after.breaches, after.from_history) == (1, 0) and "history" not in after.reason
    assert ev.history_times() == ()


def test_a_reset_forgets_the_streaks():
    ev = Evaluator(Thresholds(persist=2))
    ev.evaluate(healthy(canary_p99_s=0.9), history_at=10.0)
    ev.reset()
    m = by_name(ev.evaluate(healthy(canary_p99_s=0.9)))["p99_ratio"]
    assert (m.verdict, m.breaches, m.from_history) == (Verdict.WARN, 1, 0)


def test_a_breach_warns_until_it_persists_then_fails():
    ev = Evaluator(Thresholds(persist=3))
    slow = healthy(canary_p99_s=0.9)  # ratio 3.2 > 1.2, absolute p99 still fine
    first, second, third = (ev.evaluate(slow) for _ in range(3))
    assert [first.verdict, second.verdict, third.verdict] == [Verdict.WARN, Verdict.WARN, Verdict.FAIL]
    assert by_name(first)["p99_ratio"].reason == "p99 canary/stable 3.21x > 1.2x for 1/3 evaluations"
    assert by_name(third)["p99_ratio"].breaches == 3
    assert "for 3/3 evaluations" in third.reason
    assert by_name(third)["p99"].verdict is Verdict.PASS


def test_a_blip_does_not_flip_the_verdict_and_a_pass_resets_the_count():
    ev = Evaluator(Thresholds(persist=3))
    blip = healthy(canary_error_ratio=0.02)
    verdicts = [ev.evaluate(m).verdict for m in (blip, blip, healthy(), blip, blip)]
    assert verdicts == [Verdict.WARN, Verdict.WARN, Verdict.PASS, Verdict.WARN, Verdict.WARN]
    assert ev.evaluate(blip).verdict is Verdict.FAIL


def test_no_data_neither_counts_nor_resets_a_breach():
    ev = Evaluator(Thresholds(persist=2))
    assert ev.evaluate(healthy(canary_p99_s=2.0)).verdict is Verdict.WARN
    gap = ev.evaluate(healthy(canary_p99_s=None))
    assert by_name(gap)["p99"].verdict is Verdict.NO_DATA
    assert by_name(gap)["p99"].value is None
    assert ev.evaluate(healthy(canary_p99_s=2.0)).verdict is Verdict.FAIL


def test_recovery_returns_to_pass():
    ev = Evaluator(Thresholds(persist=1))
    assert ev.evaluate(healthy(canary_p99_s=2.0)).verdict is Verdict.FAIL
    assert ev.evaluate(healthy()).verdict is Verdict.PASS


def test_missing_numbers_are_no_data_never_a_pass():
    a = Evaluator(Thresholds()).evaluate(healthy(canary_error_ratio=None))
    assert a.verdict is Verdict.NO_DATA
    assert "error_ratio" in a.reason
    a = Evaluator(Thresholds()).evaluate(healthy(stable_p99_s=None))
    assert a.verdict is Verdict.NO_DATA
    assert by_name(a)["p99_ratio"].reason == "no stable p99 to compare with"
    # a stable p99 of zero cannot be divided by: no data, not infinity
    assert by_name(Evaluator(Thresholds()).evaluate(healthy(stable_p99_s=0.0)))["p99_ratio"].value is None


def test_too_few_requests_is_no_data_even_with_bad_numbers():
    a = Evaluator(Thresholds(min_requests=20, persist=1)).evaluate(
        healthy(canary_p99_s=5.0, canary_error_ratio=0.5, canary_requests=7.0)
    )
    assert a.verdict is Verdict.NO_DATA
    assert "only 7 canary requests in the window (need 20)" in a.reason


def test_drift_alone_only_warns():
    a = Evaluator(Thresholds(persist=1)).evaluate(healthy(drift=SHIFTED))
    assert a.verdict is Verdict.WARN
    d = by_name(a)["drift"]
    assert d.verdict is Verdict.WARN and d.value == pytest.approx(SHIFTED.cramers_v)
    assert "latency distributions differ" in d.reason and "p=" in d.reason


def test_drift_without_a_test_does_not_block_a_pass():
    a = Evaluator(Thresholds()).evaluate(healthy(drift=None, drift_note="too few requests for the test"))
    assert a.verdict is Verdict.PASS
    assert by_name(a)["drift"].verdict is Verdict.NO_DATA
    assert by_name(a)["drift"].reason == "too few requests for the test"


def test_fail_wins_over_warn_and_lists_every_failing_metric():
    ev = Evaluator(Thresholds(persist=1))
    a = ev.evaluate(healthy(canary_p99_s=3.0, canary_error_ratio=0.1, drift=SHIFTED))
    assert a.verdict is Verdict.FAIL
    assert "canary p99 3 s > 1.2 s" in a.reason and "canary 5xx ratio 10% > 0.5%" in a.reason


def test_impossible_numbers_are_no_data_with_the_reason_never_a_pass():
    canary = VariantMetrics(
        "canary",
        p99_s=-1.0,
        error_ratio=-1.0,
        rps=10.0,
        requests=100.0,
        buckets=(Bucket("0.1", 80.0), Bucket("+Inf", 100.0)),
    )
    vetted, problems = vet("canary", canary)
    assert (vetted.p99_s, vetted.error_ratio, vetted.rps) == (None, None, 10.0)
    a = Evaluator(Thresholds()).evaluate(
        healthy(canary_p99_s=vetted.p99_s, canary_error_ratio=vetted.error_ratio, problems=problems)
    )
    assert a.verdict is Verdict.NO_DATA
    assert a.reason == (
        "canary p99 is -1 s: impossible, a latency is never negative; "
        "canary 5xx ratio is -1: impossible, a ratio lies between 0 and 1"
    )
    m = by_name(a)
    assert m["p99"].reason.startswith("canary p99 is -1 s") and m["p99_ratio"].reason.startswith(
        "canary p99 is -1 s"
    )
    assert m["error_ratio"].reason.startswith("canary 5xx ratio is -1")


def test_an_impossible_number_outside_the_thresholds_still_blocks_a_pass():
    problems = {"stable.throughput": "stable throughput is -3/s: impossible, a rate is never negative"}
    a = Evaluator(Thresholds()).evaluate(healthy(problems=problems))
    assert a.verdict is Verdict.NO_DATA
    assert a.reason == problems["stable.throughput"]


def test_float_noise_is_not_called_impossible():
    m = VariantMetrics(
        "canary",
        p99_s=0.0,
        error_ratio=1 + 1e-12,
        rps=0.0,
        requests=95.0,
        buckets=(Bucket("0.1", 95.00000000000001), Bucket("1", 95.0), Bucket("+Inf", 95.0)),
    )
    assert vet("canary", m) == (m, {})
