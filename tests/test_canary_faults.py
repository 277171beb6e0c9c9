"""The canary source facing a broken Prometheus: a small local HTTP server plays every
fault, and the source must say what happened, show no false number and never block
the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from promtools import free_port

from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.query import QueryError
from ebpftop.collectors.canary.verdict import Thresholds, Verdict
from ebpftop.core.bus import Bus
from ebpftop.core.collector import CollectorRunner, SourceUnavailable
from ebpftop.core.model import HealthState
from ebpftop.core.settings import Settings

LES = ("0.1", "0.5", "1", "+Inf")
TIMEOUT = 5.0  # generous: a loaded test machine must not turn answers into timeouts
STALL_TIMEOUT = 0.5


def vector(*samples: tuple[dict, str]) -> dict:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [1.0, v]} for m, v in samples]},
    }


def healthy_answer(query: str, value: str | None = None) -> dict:
    """A plausible answer for each default template (or `value` everywhere)."""
    if value is not None and "histogram_quantile" in query:
        return vector(({}, value))
    if "histogram_quantile" in query:
        return vector(({}, "0.25"))
    if "by (le)" in query:
        counts = ("80", "95", "100", "100")
        return vector(*(({"le": le}, value or c) for le, c in zip(LES, counts, strict=True)))
    if value is not None:
        return vector(({}, value))
    if "code=~" in query:
        return vector(({}, "0.001"))
    return vector(({}, "10"))


Reply = tuple[int, str, bytes]  # status, content type, body


def js(obj: dict, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(obj).encode()


def healthy(path: str, query: str) -> Reply:
    if path.endswith("query_exemplars"):
        return js({"status": "success", "data": []})
    return js(healthy_answer(query))


class FaultServer:
    """Answers /api/v1/* with `self.reply(path, query)`; format_query parses every
    query unless `self.format_reply` says otherwise."""

    def __init__(self) -> None:
        self.reply: Callable[[str, str], Reply] = healthy
        self.format_reply: Reply | None = None
        self.release = threading.Event()  # frees handlers that stall
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                owner.hits.append(url.path)
                if url.path == "/api/v1/format_query":
                    status, ctype, body = owner.format_reply or js({"status": "success", "data": q})
                else:
                    status, ctype, body = owner.reply(url.path, q)
                if status == 0:  # stall: say nothing until released
                    owner.release.wait(30)
                    return
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = FaultServer()
    yield s
    s.close()


def make(url: str, *services: ServiceConfig, timeout: float = TIMEOUT) -> CanaryCollector:
    services = services or (
        ServiceConfig(name="shop", variant_label="version", thresholds=Thresholds(persist=1, min_requests=0)),
    )
    s = Settings(prometheus_url=url, canary_timeout=timeout, canary_interval=1.0)
    return CanaryCollector(s, services=services, clock=lambda: 1_000_000.0)


async def collect_once(c: CanaryCollector):
    await c.start()
    try:
        return await c.collect()
    finally:
        await c.close()


async def test_healthy_fake_gives_numbers(server):
    (s,) = (await collect_once(make(server.url))).services
    assert s.canary.p99_s == 0.25 and s.canary.error_ratio == 0.001 and s.canary.rps == 10.0
    assert s.verdict is Verdict.PASS


async def test_connection_refused_says_so():
    c = make(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(QueryError) as exc:
        await collect_once(c)
    assert exc.value.kind == "connection"
    assert "Connection refused" in exc.value.message


async def test_a_stall_times_out_without_blocking_the_loop(server):
    server.reply = lambda path, q: (0, "", b"")
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    c = make(server.url, timeout=STALL_TIMEOUT)
    try:
        with pytest.raises(QueryError) as exc:
            await collect_once(c)
    finally:
        done.set()
        await t
    assert exc.value.kind == "timeout"
    assert f"within {STALL_TIMEOUT:g} s" in exc.value.message
    assert ticks > 5  # the loop kept running while every query hung


@pytest.mark.parametrize(
    "reply,kind,needle",
    [
        ((503, "text/plain", b"Service Unavailable"), "http", "HTTP 503: Service Unavailable"),
        (
            js({"status": "error", "errorType": "unavailable", "error": "too many queries"}, 503),
            "api",
            "HTTP 503, unavailable: too many queries",
        ),
        (
            js(
                {
                    "status": "error",
                    "errorType": "execution",
                    "error": "query processing would load too many samples",
                },
                422,
            ),
            "api",
            "HTTP 422, execution: query processing would load too many samples",
        ),
        (
            (200, "application/json", b'{"status":"success","data":{"resultType":"vector","resu'),
            "bad_response",
            "not JSON",
        ),
        (
            (200, "text/html", b"<!doctype html><html><body>Sign in to continue</body></html>"),
            "bad_response",
            "an HTML page",
        ),
        ((502, "text/html", b"<html><body>Bad Gateway</body></html>"), "http", "HTTP 502 with an HTML page"),
        ((200, "application/json", b""), "bad_response", "an empty body"),
        ((200, "application/json", b"[1, 2]"), "bad_response", "not an object"),
        (
            js({"status": "success", "data": {"resultType": "matrix", "result": []}}),
            "bad_response",
            "expected an instant vector, got a matrix",
        ),
        (js(vector(({}, "fast"))), "bad_response", "is not a number"),
    ],
)
async def test_broken_answers_fail_with_a_message_naming_the_problem(server, reply, kind, needle):
    server.reply = lambda path, q: reply
    with pytest.raises(QueryError) as exc:
        await collect_once(make(server.url))
    assert needle in exc.value.message, exc.value.message
    assert "every query failed" in str(exc.value)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
async def test_nan_and_inf_are_no_data_never_a_number(server, value):
    server.reply = lambda path, q: js(healthy_answer(q, value))
    (s,) = (await collect_once(make(server.url))).services
    for v in (s.canary, s.stable):
        assert (v.p99_s, v.error_ratio, v.rps, v.requests) == (None, None, None, None)
        assert all(b.count is None for b in v.buckets)
    assert s.verdict is Verdict.NO_DATA
    assert all(m.value is None for m in s.metrics)
    assert s.drift.statistic is None and s.drift.note == "a latency bucket has no data"


def with_numbers(**numbers: str | tuple[str, ...]) -> Callable[[str, str], Reply]:
    """Healthy answers except `numbers`, keyed "<variant>_<metric>" (p99, error_ratio,
    throughput, or buckets: one count per LES bound)."""

    def reply(path: str, q: str) -> Reply:
        if path.endswith("query_exemplars"):
            return healthy(path, q)
        variant = "canary" if 'version="canary"' in q else "stable"
        metric = (
            "p99"
            if "histogram_quantile" in q
            else "buckets"
            if "by (le)" in q
            else "error_ratio"
            if "code=~" in q
            else "throughput"
        )
        value = numbers.get(f"{variant}_{metric}")
        if value is None:
            return js(healthy_answer(q))
        if metric == "buckets":
            return js(vector(*(({"le": le}, c) for le, c in zip(LES, value, strict=True))))
        return js(vector(({}, value)))

    return reply


@pytest.mark.parametrize(
    "numbers,field,said",
    [
        (
            dict(canary_p99="-1", canary_error_ratio="-1"),
            "canary.p99_s",
            ["canary p99 is -1 s: impossible", "canary 5xx ratio is -1: impossible"],
        ),
        (dict(canary_error_ratio="1.5"), "canary.error_ratio", ["canary 5xx ratio is 1.5: impossible"]),
        (dict(stable_p99="-0.2"), "stable.p99_s", ["stable p99 is -0.2 s: impossible"]),
        (dict(stable_throughput="-3"), "stable.rps", ["stable throughput is -3/s: impossible"]),
        (
            dict(canary_buckets=("80", "95", "90", "100")),
            "canary.requests",
            ["canary latency buckets fall from 95 at le=0.5 to 90 at le=1: impossible"],
        ),
        (
            dict(stable_buckets=("-5", "95", "100", "100")),
            "stable.requests",
            ["stable latency bucket le=0.1 holds -5 requests: impossible"],
        ),
    ],
    ids=[
        "negative-p99-and-ratio",
        "ratio-above-1",
        "negative-stable-p99",
        "negative-throughput",
        "buckets-not-cumulative",
        "counter-went-down",
    ],
)
async def test_impossible_numbers_are_no_data_naming_variant_metric_and_value(server, numbers, field, said):
    server.reply = with_numbers(**numbers)
    (s,) = (await collect_once(make(server.url))).services
    assert s.verdict is Verdict.NO_DATA, s.reason
    for text in said:
        assert text in s.reason, s.reason
    variant, attr = field.split(".")
    assert getattr(getattr(s, variant), attr) is None  # never shown as a number
    assert "within thresholds" not in s.reason


async def test_an_impossible_number_does_not_hide_a_real_breach(server):
    server.reply = with_numbers(canary_error_ratio="0.5", stable_throughput="-3")
    (s,) = (await collect_once(make(server.url))).services
    assert s.verdict is Verdict.FAIL
    assert "canary 5xx ratio 50% > 0.5%" in s.reason and "stable throughput is -3/s: impossible" in s.reason


async def test_broken_buckets_void_the_drift_test_and_the_p99_built_on_them(server):
    server.reply = with_numbers(canary_buckets=("80", "95", "90", "100"))
    (s,) = (await collect_once(make(server.url))).services
    assert s.canary.p99_s is None and all(b.count is None for b in s.canary.buckets)
    assert s.drift.statistic is None and "fall from 95 at le=0.5" in s.drift.note
    assert {m.name: m.verdict for m in s.metrics}["p99"] is Verdict.NO_DATA


async def test_a_template_prometheus_could_not_run_is_not_called_unparseable(server):
    server.format_reply = js(
        {
            "status": "error",
            "errorType": "execution",
            "error": "query processing would load too many samples",
        },
        422,
    )
    with pytest.raises(QueryError) as exc:
        await collect_once(make(server.url))
    assert "does not parse" not in exc.value.message
    assert "HTTP 422, execution: query processing would load too many samples" in exc.value.message
    assert "template p99" in exc.value.message


async def test_a_template_prometheus_cannot_parse_stops_the_source_naming_it(server):
    server.format_reply = js(
        {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected end of input"},
        400,
    )
    with pytest.raises(SourceUnavailable) as exc:
        await collect_once(make(server.url))
    assert "template p99 does not parse: HTTP 400, bad_data: 1:5: parse error" in exc.value.message


async def test_prometheus_error_text_is_cleaned(server):
    server.reply = lambda path, q: js(
        {"status": "error", "errorType": "exec\x1b]0;owned\x07", "error": "boom\x1b[2J\u202egnp.exe"}, 422
    )
    with pytest.raises(QueryError) as exc:
        await collect_once(make(server.url))
    assert "\x1b" not in exc.value.message and "\u202e" not in exc.value.message
    assert "exec\\x1b]0;owned\\x07: boom\\x1b[2J\\u202egnp.exe" in exc.value.message


async def test_empty_results_are_no_data(server):
    server.reply = lambda path, q: js(vector())
    (s,) = (await collect_once(make(server.url))).services
    assert s.verdict is Verdict.NO_DATA
    assert s.canary.p99_s is None and s.canary.buckets == ()


async def test_warnings_are_kept_and_degrade_the_source(server):
    def reply(path, q):
        _, _, body = healthy(path, q)
        obj = json.loads(body)
        obj["warnings"] = ["remote read from store-2 failed: partial data"]
        return js(obj)

    server.reply = reply
    c = make(server.url)
    data = await collect_once(c)
    (s,) = data.services
    assert s.canary.p99_s == 0.25  # the data still counts
    assert s.warnings == ("remote read from store-2 failed: partial data",)  # once, not per query
    assert s.errors == ()
    assert "Prometheus warns: remote read from store-2 failed" in c.degraded_reason(data)


async def test_a_series_explosion_is_an_error_not_a_pick(server):
    def reply(path, q):
        if "histogram_quantile" in q:  # a p99 template that forgot to aggregate
            return js(vector(({"pod": "a"}, "0.2"), ({"pod": "b"}, "0.9")))
        return healthy(path, q)

    server.reply = reply
    (s,) = (await collect_once(make(server.url))).services
    assert s.canary.p99_s is None and s.stable.p99_s is None
    assert s.canary.rps == 10.0
    assert (
        "canary p99: template p99 returned 2 series; the template must aggregate to one (e.g. sum(...))"
        in s.errors
    )
    assert s.verdict is Verdict.NO_DATA


async def test_one_failing_service_goes_stale_while_the_other_stays_fresh(server):
    a = ServiceConfig(name="a", selector='job="a"', variant_label="version")
    b = ServiceConfig(name="b", selector='job="b"', variant_label="version")
    now = [1000.0]
    c = CanaryCollector(
        Settings(prometheus_url=server.url, canary_timeout=TIMEOUT), services=[a, b], clock=lambda: now[0]
    )
    await c.start()
    try:
        first = await c.collect()
        server.reply = lambda path, q: (503, "text/plain", b"down") if 'job="a"' in q else healthy(path, q)
        now[0] = 1030.0
        second = await c.collect()
    finally:
        await c.close()
    sa, sb = second.services
    assert sa.stale and sa.evaluated_at == 1000.0  # the age of the last good data
    assert sa.canary.p99_s == first.services[0].canary.p99_s  # last good numbers, marked stale
    assert sa.errors and all("HTTP 503: down" in e for e in sa.errors)
    assert not sb.stale and sb.evaluated_at == 1030.0
    assert "a: stale" in c.degraded_reason(second)


async def test_runner_marks_down_then_degraded_with_the_age_of_good_data_and_backs_off(server):
    snaps = []
    bus = Bus()
    bus.subscribe(snaps.append)
    now = [5000.0]
    c = make(server.url)
    runner = CollectorRunner(c, bus, clock=lambda: now[0])
    await c.start()
    try:
        server.reply = lambda path, q: (503, "text/plain", b"warming up")
        assert await runner.run_once() is False
        assert snaps[-1].health.state is HealthState.DOWN and "HTTP 503" in snaps[-1].health.message
        first_retry = runner._retry_in

        server.reply = healthy
        assert await runner.run_once() is True
        assert snaps[-1].health.state is HealthState.OK and snaps[-1].data.services[0].canary.p99_s == 0.25

        server.reply = lambda path, q: (503, "text/plain", b"overloaded")
        now[0] = 5012.0
        assert await runner.run_once() is False
        assert await runner.run_once() is False
        h = snaps[-1].health
        assert h.state is HealthState.DEGRADED and "overloaded" in h.message
        assert h.last_ok == 5000.0 and h.age(now=5020.0) == 20.0  # the stale badge's age
        assert snaps[-1].data is None  # a failed sample never carries numbers
        assert runner._retry_in > first_retry  # backing off
    finally:
        await c.close()


async def test_exemplar_failure_keeps_the_metrics(server):
    def reply(path, q):
        if path.endswith("query_exemplars"):
            return 200, "text/html", b"<html>nope</html>"
        return healthy(path, q)

    server.reply = reply
    (s,) = (await collect_once(make(server.url))).services
    assert s.canary.p99_s == 0.25
    assert s.exemplars == ()
    assert any(e.startswith("canary exemplars:") and "HTML page" in e for e in s.errors)


def test_snapshot_json_has_per_service_metrics_verdict_and_evidence(server, tmp_path):
    import os
    import pathlib
    import subprocess

    ebpftop = pathlib.Path(__file__).resolve().parent.parent / ".venv" / "bin" / "ebpftop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_")}
    env["HOME"] = str(tmp_path)  # no user config file
    proc = subprocess.run(
        [
            str(ebpftop),
            "--prometheus-url",
            server.url,
            "--canary-min-requests",
            "0",
            "snapshot",
            "--json",
            "--source",
            "canary",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["sources"]["canary"]
    assert entry["health"]["state"] == "ok"
    (svc,) = entry["data"]["services"]
    assert svc["name"] == "default" and svc["variant_label"] == "version"
    assert svc["verdict"] == "pass"
    assert (svc["canary"]["p99_s"], svc["canary"]["error_ratio"], svc["canary"]["rps"]) == (0.25, 0.001, 10.0)
    assert svc["stable"]["p99_s"] == 0.25
    metrics = {m["name"]: m for m in svc["metrics"]}
    assert metrics["p99"]["value"] == 0.25 and metrics["p99"]["threshold"] == 1.2
    assert metrics["error_ratio"]["threshold"] == 0.005
    assert svc["drift"]["test"] == "chi-square test of homogeneity" and svc["drift"]["p_value"] is not None
    assert "histogram_quantile" in svc["queries"]["canary.p99"]
