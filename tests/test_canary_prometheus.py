"""The canary collector against a real Prometheus holding exactly known, backfilled data.

The histograms grow by fixed counts every 15 s, so over a 1m window at a sample time
every `increase()` is exactly four steps and every quantity has one right answer: the
test computes p99 with its own implementation of histogram_quantile's interpolation,
the 5xx ratio and throughput by hand, and asserts the collector reports those.
"""

from __future__ import annotations

import math
import time

import pytest
from promtools import openmetrics_counter, openmetrics_histogram, prometheus

from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.data import CanaryData
from ebpftop.collectors.canary.stats import chi_square_homogeneity
from ebpftop.collectors.canary.verdict import Thresholds, Verdict
from ebpftop.core.collector import SourceUnavailable
from ebpftop.core.model import Health, Snapshot, from_json, to_json
from ebpftop.core.settings import Settings

pytestmark = pytest.mark.integration

STEP = 15
STEPS = 40
# Aligned to Prometheus' 2h blocks, well inside retention, well before the head.
T0 = (int(time.time()) // 7200) * 7200 - 4 * 3600
AT = T0 + 600  # a sample time: [AT-60, AT] holds five samples, four steps

LES = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
FAST = dict(zip(LES, (50, 30, 15, 4, 1, 0, 0), strict=True))  # per step, non-cumulative
SLOW = dict(zip(LES, (10, 20, 20, 20, 10, 20, 0), strict=True))

HIST = {
    (("job", "good"), ("version", "canary")): FAST,
    (("job", "good"), ("version", "stable")): FAST,
    (("job", "bad"), ("version", "canary")): SLOW,
    (("job", "bad"), ("version", "stable")): FAST,
    (("job", "tracked"), ("track", "canary")): FAST,
    (("job", "tracked"), ("track", "stable")): SLOW,
}
REQS = {
    # "good" has no 5xx series at all: zero errors must read 0, not "no data"
    (("job", "good"), ("version", "canary"), ("code", "200")): 100,
    (("job", "good"), ("version", "stable"), ("code", "200")): 100,
    (("job", "bad"), ("version", "canary"), ("code", "200")): 98,
    (("job", "bad"), ("version", "canary"), ("code", "500")): 2,
    (("job", "bad"), ("version", "stable"), ("code", "200")): 100,
    (("job", "bad"), ("version", "stable"), ("code", "503")): 0,
    (("job", "tracked"), ("track", "canary"), ("code", "200")): 99,
    (("job", "tracked"), ("track", "canary"), ("code", "502")): 1,
    (("job", "tracked"), ("track", "stable"), ("code", "200")): 100,
}


def histogram_quantile(q: float, per_bucket: dict[str, int]) -> float:
    """Prometheus' histogram_quantile on one histogram, written out independently:
    linear interpolation inside the bucket holding rank q*total; the +Inf bucket
    answers with the highest finite bound; the first bucket's lower bound is 0."""
    les = sorted(per_bucket, key=float)
    cum, total = [], 0
    for le in les:
        total += per_bucket[le]
        cum.append(total)
    rank = q * total
    for i, le in enumerate(les):
        if cum[i] >= rank:
            if le == "+Inf":
                return float(les[i - 1])
            lower = 0.0 if i == 0 else float(les[i - 1])
            below = 0 if i == 0 else cum[i - 1]
            return lower + (float(le) - lower) * (rank - below) / (cum[i] - below)
    raise AssertionError("unreachable")


def window_counts(per_step: dict[str, int]) -> list[float]:
    return [4.0 * per_step[le] for le in LES]


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    om = (
        openmetrics_histogram("http_request_duration_seconds", HIST, start=T0, step=STEP, steps=STEPS)
        + openmetrics_counter("http_requests", REQS, start=T0, step=STEP, steps=STEPS)
        + "# EOF\n"
    )
    with prometheus(tmp_path_factory.mktemp("prom"), openmetrics=om) as p:
        yield p


def collector(prom, *services: ServiceConfig, **settings) -> CanaryCollector:
    # live evaluations only: persistence counted live is what these tests follow
    # (judging from history: test_canary_history.py)
    settings.setdefault("canary_history", False)
    s = Settings(prometheus_url=prom.url, canary_timeout=10.0, **settings)
    return CanaryCollector(s, services=services, clock=lambda: AT)


def svc(name: str, **kw) -> ServiceConfig:
    kw.setdefault("thresholds", Thresholds(persist=2))
    return ServiceConfig(name=name, selector=f'job="{name}"', **kw)


async def sample(c: CanaryCollector) -> CanaryData:
    try:
        await c.start()
        return await c.collect()
    finally:
        await c.close()


def test_fixture_histogram_quantile_matches_hand_values():
    # the test's own interpolation, checked on values worked out by hand
    assert histogram_quantile(0.99, FAST) == pytest.approx(0.5)
    assert histogram_quantile(0.99, SLOW) == pytest.approx(1 + 1.5 * (99 - 80) / 20)
    assert histogram_quantile(0.5, FAST) == pytest.approx(0.05)


async def test_healthy_canary_passes_with_exact_numbers(prom):
    data = await sample(collector(prom, svc("good")))
    (s,) = data.services
    assert s.verdict is Verdict.PASS, s.reason
    assert s.variant_label == "version"
    assert s.evaluated_at == AT and not s.stale and s.errors == () and s.warnings == ()
    for v in (s.canary, s.stable):
        assert v.p99_s == pytest.approx(histogram_quantile(0.99, FAST), rel=1e-9)
        assert v.error_ratio == 0.0  # measured zero, not missing
        assert v.rps == pytest.approx(100 / STEP, rel=1e-9)
        assert v.requests == pytest.approx(400.0, rel=1e-9)
        assert [b.le for b in v.buckets] == list(LES)
    assert s.canary.variant == "canary" and s.stable.variant == "stable"
    m = {x.name: x for x in s.metrics}
    assert m["p99_ratio"].value == pytest.approx(1.0, rel=1e-9)
    assert s.drift.statistic == pytest.approx(0.0, abs=1e-9)
    assert s.drift.p_value == pytest.approx(1.0)
    assert s.queries["canary.p99"].startswith("histogram_quantile(0.99")
    assert 'version="canary",job="good"' in s.queries["canary.p99"]


async def test_slow_canary_warns_then_fails_with_its_evidence(prom):
    c = collector(prom, svc("bad"))
    await c.start()
    try:
        first = (await c.collect()).services[0]
        second = (await c.collect()).services[0]
    finally:
        await c.close()
    expected_p99 = histogram_quantile(0.99, SLOW)
    stable_p99 = histogram_quantile(0.99, FAST)
    assert first.verdict is Verdict.WARN, first.reason
    assert second.verdict is Verdict.FAIL, second.reason
    assert second.canary.p99_s == pytest.approx(expected_p99, rel=1e-9)
    assert second.stable.p99_s == pytest.approx(stable_p99, rel=1e-9)
    assert second.canary.error_ratio == pytest.approx(2 / 100, rel=1e-9)
    assert second.stable.error_ratio == 0.0
    m = {x.name: x for x in second.metrics}
    assert m["p99"].verdict is Verdict.FAIL and m["p99"].threshold == 1.2
    assert m["error_ratio"].verdict is Verdict.FAIL and m["error_ratio"].threshold == 0.005
    assert m["p99_ratio"].value == pytest.approx(expected_p99 / stable_p99, rel=1e-9)
    assert m["p99_ratio"].verdict is Verdict.FAIL
    assert "for 2/2 evaluations" in second.reason
    # the distribution test on exactly the window's bucket counts
    ref = chi_square_homogeneity(window_counts(SLOW), window_counts(FAST))
    assert second.drift.test == "chi-square test of homogeneity"
    assert second.drift.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert second.drift.dof == ref.dof
    assert second.drift.p_value == pytest.approx(ref.p_value, rel=1e-6)
    assert second.drift.effect_size == pytest.approx(ref.cramers_v, rel=1e-9)
    assert m["drift"].verdict is Verdict.WARN


async def test_variant_label_track_is_found_when_version_is_absent(prom):
    (s,) = (await sample(collector(prom, svc("tracked")))).services
    assert s.variant_label == "track"
    assert s.canary.error_ratio == pytest.approx(1 / 100, rel=1e-9)
    assert s.stable.p99_s == pytest.approx(histogram_quantile(0.99, SLOW), rel=1e-9)
    # canary faster than stable: ratio well under 1, but 1% errors breach 0.5%
    assert {m.name: m.verdict for m in s.metrics}["error_ratio"] is Verdict.WARN


async def test_a_service_without_series_is_no_data_not_zero(prom):
    (s,) = (await sample(collector(prom, svc("absent")))).services
    assert s.verdict is Verdict.NO_DATA
    assert 'no series with version="canary" or track="canary"' in s.reason
    assert s.canary.p99_s is None and s.canary.error_ratio is None and s.canary.rps is None


async def test_a_window_without_samples_is_no_data(prom):
    c = CanaryCollector(
        Settings(prometheus_url=prom.url),
        services=[svc("good", variant_label="version")],
        clock=lambda: T0 - 3600,
    )
    (s,) = (await sample(c)).services
    assert s.verdict is Verdict.NO_DATA
    assert (s.canary.p99_s, s.canary.error_ratio, s.canary.rps, s.canary.requests) == (None, None, None, None)
    assert s.drift.statistic is None and s.drift.note


async def test_several_services_in_one_sample(prom):
    data = await sample(collector(prom, svc("good"), svc("bad"), svc("tracked")))
    assert [s.name for s in data.services] == ["good", "bad", "tracked"]
    assert [s.verdict for s in data.services] == [Verdict.PASS, Verdict.WARN, Verdict.WARN]


async def test_a_template_prometheus_cannot_parse_stops_the_source_naming_it(prom):
    # balanced and with $variant, so the local check passes; Prometheus rejects it
    broken = svc("shop", p99="histogram_quantile(0.99, rate(x{$variant}[$window])) +")
    c = collector(prom, broken)
    await c.start()
    try:
        with pytest.raises(SourceUnavailable) as exc:
            await c.collect()
    finally:
        await c.close()
    assert "canary service 'shop', template p99 does not parse" in exc.value.message
    assert "bad_data" in exc.value.message


async def test_snapshot_json_carries_metrics_verdict_and_evidence(prom):
    data = await sample(collector(prom, svc("bad")))
    snap = Snapshot("canary", 1, AT, Health(), data)
    back = from_json(to_json(snap))
    assert back.data == data
    import json

    doc = json.loads(to_json(snap))["data"]["services"][0]
    assert doc["verdict"] == "warn"
    assert doc["canary"]["p99_s"] == pytest.approx(histogram_quantile(0.99, SLOW), rel=1e-9)
    assert {m["name"] for m in doc["metrics"]} == {"p99", "error_ratio", "p99_ratio", "drift"}
    assert doc["drift"]["test"] == "chi-square test of homogeneity"
    assert "canary.error_ratio" in doc["queries"]
    assert all(math.isfinite(b["count"]) for b in doc["canary"]["buckets"])
