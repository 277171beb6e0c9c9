"""Verdicts from history: at start (and after a gap) the canary collector judges the
persistence window from Prometheus history instead of waiting for that many live
evaluations, with the same thresholds, persistence and no-data rules.

A real Prometheus holds backfilled series sampled every 5 s; the evaluations (every 5 s,
window 10s) fall between samples, so each window holds exactly two samples and each
evaluation sees exactly one step of the counters: a step with errors is a breach of
exactly one evaluation.
"""

from __future__ import annotations

import json
import time

import pytest
from promtools import prometheus
from test_snapshot_cli import ebpftop

from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.data import CanaryData, ServiceCanary
from ebpftop.collectors.canary.verdict import Thresholds, Verdict
from ebpftop.core.settings import Settings

pytestmark = pytest.mark.integration

STEP = 5  # seconds between samples, and between evaluations
T0 = (int(time.time()) // 7200) * 7200 - 4 * 3600  # inside a 2h block, well before the head
SAMPLES = 200
AT = T0 + 600 + 2.5  # between two samples: [AT-10, AT] holds the samples AT-7.5 and AT-2.5


def errors_in_step(job: str, k: int) -> int:
    """5xx answers of the canary of `job` in the step ending with sample k (of 100)."""
    if job == "failing":
        return 10
    if job == "spike":  # one step: only the evaluation at AT-5 sees it
        return 50 if T0 + k * STEP == AT - 7.5 else 0
    if job == "fresh":
        return 10
    return 0


def first_sample(job: str) -> int:
    # "fresh" starts just before AT: its history holds no data at all
    return int((AT - 7.5 - T0) // STEP) if job == "fresh" else 0


def openmetrics(jobs: tuple[str, ...], start: int, samples: int) -> str:
    """Counters and a histogram per job and variant, 100 requests per step each."""
    reqs, hist = ["# TYPE http_requests counter"], ["# TYPE http_request_duration_seconds histogram"]
    for job in jobs:
        for variant in ("canary", "stable"):
            base = f'job="{job}",version="{variant}"'
            errors = 0
            for k in range(first_sample(job), samples + 1):
                t = start + k * STEP
                n = k - first_sample(job)
                if variant == "canary" and n:
                    errors += errors_in_step(job, k)
                reqs.append(f'http_requests_total{{{base},code="200"}} {100 * n - errors} {t}')
                reqs.append(f'http_requests_total{{{base},code="500"}} {errors} {t}')
                for le, share in (("0.1", 90), ("1", 100), ("+Inf", 100)):
                    hist.append(f'http_request_duration_seconds_bucket{{{base},le="{le}"}} {share * n} {t}')
                hist.append(f"http_request_duration_seconds_count{{{base}}} {100 * n} {t}")
                hist.append(f"http_request_duration_seconds_sum{{{base}}} {3 * n} {t}")
    return "\n".join(reqs + hist) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    om = openmetrics(("failing", "spike", "fresh", "healthy"), T0, SAMPLES)
    with prometheus(tmp_path_factory.mktemp("prom"), openmetrics=om) as p:
        yield p


def service(job: str, persist: int = 3) -> ServiceConfig:
    return ServiceConfig(
        name=job,
        selector=f'job="{job}"',
        window="10s",
        thresholds=Thresholds(persist=persist, min_requests=0),
    )


def collector(prom, *services: ServiceConfig, clock=lambda: AT, **settings) -> CanaryCollector:
    s = Settings(prometheus_url=prom.url, canary_timeout=10.0, canary_interval=STEP, **settings)
    return CanaryCollector(s, services=services, clock=clock)


async def collects(c: CanaryCollector, n: int = 1) -> list[CanaryData]:
    await c.start()
    try:
        return [await c.collect() for _ in range(n)]
    finally:
        await c.close()


def metric(s: ServiceCanary, name: str):
    return {m.name: m for m in s.metrics}[name]


async def test_an_ongoing_failure_fails_on_the_first_collect_marked_from_history(prom):
    (data,) = await collects(collector(prom, service("failing")))
    (s,) = data.services
    assert s.verdict is Verdict.FAIL, s.reason
    errors = metric(s, "error_ratio")
    assert errors.verdict is Verdict.FAIL and errors.value == pytest.approx(0.1)
    assert errors.breaches == 3 and errors.from_history == 2
    assert "canary 5xx ratio 10% > 0.5% for 3/3 evaluations (2 from history)" in s.reason
    assert s.history_at == (AT - 2 * STEP, AT - STEP)
    assert s.evaluated_at == AT and s.history_note == "" and s.errors == ()
    # a passing metric counts nothing from history
    assert metric(s, "p99").verdict is Verdict.PASS and metric(s, "p99").from_history == 0


async def test_live_evaluations_take_over_from_history(prom):
    now = [AT]

    def clock() -> float:
        t = now[0]
        now[0] += STEP  # the next collect is one interval later: no gap
        return t

    datas = await collects(collector(prom, service("failing"), clock=clock), 3)
    counted = [metric(d.services[0], "error_ratio").from_history for d in datas]
    assert counted == [2, 1, 0]  # the window slides off the history
    assert [d.services[0].verdict for d in datas] == [Verdict.FAIL] * 3
    assert datas[1].services[0].history_at == (AT - STEP,)  # AT-10 is no longer counted
    assert datas[2].services[0].history_at == ()
    assert "from history" not in datas[2].services[0].reason


async def test_a_one_interval_spike_in_history_does_not_fail(prom):
    (data,) = await collects(collector(prom, service("spike")))
    (s,) = data.services
    assert s.verdict is Verdict.PASS, s.reason  # the spike at AT-5 is followed by a pass
    assert metric(s, "error_ratio").breaches == 0 and s.history_at == ()


async def test_the_spike_alone_in_history_only_warns(prom):
    # judged at AT-5 the spike is the newest evaluation: a breach, but one of three
    (data,) = await collects(collector(prom, service("spike"), clock=lambda: AT - STEP))
    (s,) = data.services
    errors = metric(s, "error_ratio")
    assert s.verdict is Verdict.WARN, s.reason
    assert (errors.verdict, errors.breaches, errors.from_history) == (Verdict.WARN, 1, 0)
    assert "for 1/3 evaluations" in s.reason and "from history" not in s.reason


async def test_no_data_in_history_stays_no_data(prom):
    (data,) = await collects(collector(prom, service("fresh")))
    (s,) = data.services
    errors = metric(s, "error_ratio")
    assert s.verdict is Verdict.WARN, s.reason  # the live breach alone: history had nothing
    assert (errors.breaches, errors.from_history) == (1, 0)
    assert "for 1/3 evaluations" in s.reason and s.history_at == ()


async def test_without_history_the_verdict_waits_for_live_evaluations(prom):
    (data,) = await collects(collector(prom, service("failing"), canary_history=False))
    (s,) = data.services
    assert s.verdict is Verdict.WARN and "for 1/3 evaluations" in s.reason


async def test_a_gap_is_filled_from_history_without_counting_twice(prom):
    times = iter([AT - 6 * STEP, AT - 5 * STEP, AT])  # then four evaluations missed
    c = collector(prom, service("failing", persist=5), clock=lambda: next(times))
    first, second, third = (d.services[0] for d in await collects(c, 3))
    # at start: four evaluations of history before the live one
    assert metric(first, "error_ratio").from_history == 4 and first.verdict is Verdict.FAIL
    assert metric(second, "error_ratio").from_history == 3  # of the newest five, two are live
    # AT-20 .. AT-5 were missed: read from history, each once, onto the live streak
    err = metric(third, "error_ratio")
    assert third.verdict is Verdict.FAIL
    assert (err.breaches, err.from_history) == (11, 4)
    assert third.history_at == tuple(AT - k * STEP for k in (4, 3, 2, 1))
    assert "for 5/5 evaluations (4 from history)" in third.reason


async def test_a_gap_longer_than_the_window_starts_the_streak_anew(prom):
    times = iter([AT - 20 * STEP, AT - 19 * STEP, AT])
    c = collector(prom, service("failing", persist=3), clock=lambda: next(times))
    *_, last = (d.services[0] for d in await collects(c, 3))
    err = metric(last, "error_ratio")
    assert (err.breaches, err.from_history) == (3, 2)  # not 2 + 1 + 2 + 1
    assert last.history_at == (AT - 2 * STEP, AT - STEP)


async def test_history_that_cannot_be_read_is_said_and_the_live_verdict_stands(prom):
    c = collector(prom, service("failing"))

    async def refused(*_args, **_kw):
        from ebpftop.collectors.canary.query import QueryError

        raise QueryError("http", "HTTP 403: range queries are not allowed here")

    await c.start()
    try:
        c._client.query_range = refused  # a proxy that allows instant queries only
        (s,) = (await c.collect()).services
    finally:
        await c.close()
    assert s.verdict is Verdict.WARN and "for 1/3 evaluations" in s.reason
    assert s.history_note.startswith("canary p99: HTTP 403: range queries are not allowed here")
    assert s.history_note.endswith("(+7 more)")
    assert s.errors == ()  # the live numbers are whole: the source is not degraded
    assert c.degraded_reason(CanaryData("x", (s,))) == ""


def _recent_failure(start: int, samples: int) -> str:
    """The default service's metrics (no job), failing with 10% errors, up to `start + samples * STEP`."""
    return openmetrics(("failing",), start, samples).replace('job="failing",', "")


def test_snapshot_reports_a_failure_already_in_history(tmp_path):
    """The real CLI with the real clock: a failure in the last minutes of history is
    "fail" in a 2-second snapshot, although only one live evaluation fits in it."""
    now = int(time.time())
    samples = 60
    start = now - samples * STEP
    with prometheus(tmp_path, openmetrics=_recent_failure(start, samples)) as p:
        argv = ["--prometheus-url", p.url, "snapshot", "--json", "--source", "canary", "--duration", "2"]
        proc = ebpftop(*argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (svc,) = doc["sources"]["canary"]["data"]["services"]
    assert svc["verdict"] == "fail", svc["reason"]
    errors = {m["name"]: m for m in svc["metrics"]}["error_ratio"]
    # two from history, unless the runner's clock grid fitted a second live sample in
    assert errors["from_history"] in (1, 2) and len(svc["history_at"]) == errors["from_history"]
    assert f"({errors['from_history']} from history)" in svc["reason"]
    assert [a["detail"]["verdict"] for a in doc["alarms"] if a["kind"] == "canary_verdict"] == ["fail"]


def test_history_times_are_the_evaluation_interval_apart():
    c = CanaryCollector(Settings(canary_interval=STEP), services=(service("x", persist=4),))
    assert c._missed(service("x", persist=4), 1000.0) == (985.0, 990.0, 995.0)
    assert c._missed(service("x", persist=1), 1000.0) == ()
    c._evaluated["x"] = 995.0
    assert c._missed(service("x", persist=4), 1000.0 + 4.9) == ()  # late, but nothing missed
    assert c._missed(service("x", persist=4), 1000.0 + 5) == (1000.0,)


def test_a_range_answer_is_read_at_each_evaluation_time():
    from ebpftop.collectors.canary.query import QueryError, RangeAnswer, parse_matrix

    data = {
        "resultType": "matrix",
        "result": [
            {"metric": {"le": "1"}, "values": [[1000.001, "3"], [1005.001, "NaN"]]},
            {"metric": {"le": "+Inf"}, "values": [[1005.001, "4"]]},
        ],
    }
    answer = RangeAnswer(parse_matrix(data), ())
    # a millisecond off (the time went over the wire as a decimal) is the same point
    assert [(s.labels, s.value) for s in answer.at(1000.0).samples] == [({"le": "1"}, 3.0)]
    assert [s.value for s in answer.at(1005.0).samples] == [None, 4.0]  # NaN is no data
    assert answer.at(1002.5).samples == ()  # no point there: as an instant query, nothing
    with pytest.raises(QueryError, match="not a matrix"):
        parse_matrix({"resultType": "vector", "result": []})
