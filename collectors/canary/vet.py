"""Numbers no real service produces, caught before anything is judged on them.

A negative latency or rate, a 5xx ratio outside 0..1, a negative or falling bucket
count becomes None ("no data") and is named in the verdict's problems, so a broken
source never passes a canary.
"""

from __future__ import annotations

from dataclasses import replace

from .data import Bucket, VariantMetrics

# float noise of rate()/increase() arithmetic, not a real excess or decrease
TOLERANCE = 1e-9


def _bucket_problem(buckets: tuple[Bucket, ...]) -> str:
    prev: tuple[str, float] | None = None  # (le, count) of the last bucket with a count
    for b in buckets:
        if b.count is None:
            continue
        if b.count < 0:
            return f"latency bucket le={b.le} holds {b.count:g} requests: impossible, a count never goes down"
        if prev is not None and b.count < prev[1] - TOLERANCE * max(1.0, prev[1]):
            return (
                f"latency buckets fall from {prev[1]:g} at le={prev[0]} to {b.count:g} at le={b.le}: "
                "impossible, a histogram's counts only grow with le"
            )
        prev = (b.le, b.count)
    return ""


def vet(role: str, m: VariantMetrics) -> tuple[VariantMetrics, dict[str, str]]:
    """`m` with every impossible number made None, and what was wrong with each, keyed
    "<role>.<metric>" (p99, error_ratio, throughput, buckets) and naming `role`."""
    problems: dict[str, str] = {}
    if m.p99_s is not None and m.p99_s < 0:
        problems[f"{role}.p99"] = f"{role} p99 is {m.p99_s:g} s: impossible, a latency is never negative"
    if m.error_ratio is not None and not -TOLERANCE <= m.error_ratio <= 1 + TOLERANCE:
        problems[f"{role}.error_ratio"] = (
            f"{role} 5xx ratio is {m.error_ratio:g}: impossible, a ratio lies between 0 and 1"
        )
    if m.rps is not None and m.rps < 0:
        problems[f"{role}.throughput"] = (
            f"{role} throughput is {m.rps:g}/s: impossible, a rate is never negative"
        )
    why = _bucket_problem(m.buckets)
    if why:
        problems[f"{role}.buckets"] = f"{role} {why}"
        # the p99 is computed from these buckets: it is no better than they are
        problems.setdefault(f"{role}.p99", f"{role} p99 comes from broken buckets: {why}")
    if not problems:
        return m, problems
    broken_buckets = f"{role}.buckets" in problems
    return replace(
        m,
        p99_s=None if f"{role}.p99" in problems else m.p99_s,
        error_ratio=None if f"{role}.error_ratio" in problems else m.error_ratio,
        rps=None if f"{role}.throughput" in problems else m.rps,
        requests=None if broken_buckets else m.requests,
        buckets=tuple(Bucket(b.le, None) for b in m.buckets) if broken_buckets else m.buckets,
    ), problems
