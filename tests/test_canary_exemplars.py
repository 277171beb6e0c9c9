"""Exemplars: parsing, choosing the slow ones, and live from a real Prometheus scraping
an instrumented process that attaches trace ids to its latency buckets."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from promtools import prometheus

from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.exemplars import Exemplar, parse_exemplars, slow_cutoff, slowest
from ebpftop.collectors.canary.query import QueryError
from ebpftop.collectors.canary.verdict import Thresholds
from ebpftop.core.settings import Settings

# what /api/v1/query_exemplars returns (shape from the Prometheus HTTP API docs)
ANSWER = [
    {
        "seriesLabels": {
            "__name__": "http_request_duration_seconds_bucket",
            "le": "2.5",
            "version": "canary",
        },
        "exemplars": [
            {"labels": {"trace_id": "aaa"}, "value": "2.1", "timestamp": 1700000001.5},
            {"labels": {"trace_id": "bbb", "span_id": "s1"}, "value": "1.9", "timestamp": 1700000002.0},
            {"labels": {"span_id": "no-trace"}, "value": "2.4", "timestamp": 1700000003.0},
        ],
    },
    {
        "seriesLabels": {"le": "0.1"},
        "exemplars": [
            {"labels": {"traceID": "ccc"}, "value": "0.05", "timestamp": 1700000004.0},
            {"labels": {"trace_id": "ddd"}, "value": "NaN", "timestamp": 1700000005.0},
        ],
    },
]


def test_parse_keeps_exemplars_with_a_trace_and_a_value():
    got = parse_exemplars(ANSWER)
    assert [(e.trace_id, e.value_s, e.bucket) for e in got] == [
        ("aaa", 2.1, "2.5"),
        ("bbb", 1.9, "2.5"),
        ("ccc", 0.05, "0.1"),
    ]
    assert got[1].labels == {"trace_id": "bbb", "span_id": "s1"}
    assert got[0].time == 1700000001.5


def test_configured_trace_label_comes_first():
    got = parse_exemplars(
        [
            {
                "seriesLabels": {},
                "exemplars": [
                    {
                        "labels": {"trace_id": "generic", "otel_trace": "specific"},
                        "value": "1",
                        "timestamp": 1,
                    }
                ],
            }
        ],
        trace_label="otel_trace",
    )
    assert got[0].trace_id == "specific"


@pytest.mark.parametrize(
    "data",
    [
        {"not": "a list"},
        ["x"],
        [{"seriesLabels": [], "exemplars": []}],
        [
            {
                "seriesLabels": {},
                "exemplars": [{"labels": {"trace_id": "a"}, "value": "1", "timestamp": "soon"}],
            }
        ],
    ],
)
def test_malformed_answers_are_errors(data):
    with pytest.raises(QueryError):
        parse_exemplars(data)


def test_cutoff_is_the_lower_bound_of_the_p99_bucket():
    bounds = [0.1, 0.25, 0.5, 1.0, float("inf")]
    # 300 ms requests interpolate to a p99 near 490 ms: they must still count as slow
    assert slow_cutoff(0.49, bounds, 1.2) == 0.25
    assert slow_cutoff(0.25, bounds, 1.2) == 0.1  # le is inclusive: 0.25 is in (0.1, 0.25]
    assert slow_cutoff(0.05, bounds, 1.2) == 0.0
    assert slow_cutoff(None, bounds, 1.2) == 1.2  # no p99 yet: the threshold


def test_slowest_at_or_above_cutoff_one_per_trace():
    ex = [
        Exemplar("a", 2.0, 1),
        Exemplar("b", 0.2, 2),
        Exemplar("a", 3.0, 3),
        Exemplar("c", 1.5, 4),
        Exemplar("d", 1.0, 5),
    ]
    assert [(e.trace_id, e.value_s) for e in slowest(ex, 1.0)] == [("a", 3.0), ("c", 1.5), ("d", 1.0)]
    assert [e.trace_id for e in slowest(ex, None, limit=2)] == ["a", "c"]


# --- live -------------------------------------------------------------------------------

# per scrape, non-cumulative: canary p99 falls in the 2.5 bucket at 1 + 1.5 * (99-98)/2
PER_SCRAPE = {"0.1": 90, "0.5": 5, "1": 3, "2.5": 2, "+Inf": 0}
CANARY_P99 = 1.75
EXEMPLARS = {"0.1": ("fast-1", 0.05), "2.5": ("slow-1", 2.0), "+Inf": ("slowest-1", 4.0)}


class Target:
    """A process exposing OpenMetrics with exemplars; counters grow on every scrape."""

    def __init__(self) -> None:
        self.scrapes = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with lock:
                    owner.scrapes += 1
                    body = owner.render(owner.scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @staticmethod
    def render(n: int) -> str:
        lines = ["# TYPE http_request_duration_seconds histogram"]
        for variant in ("canary", "stable"):
            cum = 0
            for le, inc in PER_SCRAPE.items():
                cum += inc * n
                line = f'http_request_duration_seconds_bucket{{version="{variant}",le="{le}"}} {cum}'
                if variant == "canary" and le in EXEMPLARS:
                    trace, value = EXEMPLARS[le]
                    line += f' # {{trace_id="{trace}"}} {value}'
                lines.append(line)
            lines.append(f'http_request_duration_seconds_count{{version="{variant}"}} {cum}')
            lines.append(f'http_request_duration_seconds_sum{{version="{variant}"}} 0')
        lines.append("# TYPE http_requests counter")
        for variant in ("canary", "stable"):
            lines.append(f'http_requests_total{{version="{variant}",code="200"}} {100 * n}')
        lines.append("# EOF")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def target():
    t = Target()
    yield t
    t.close()


@pytest.mark.integration
async def test_slow_canary_requests_bring_their_trace_ids(tmp_path, target):
    with prometheus(tmp_path, scrape=[target.address], scrape_interval="1s") as prom:
        svc = ServiceConfig(name="live", thresholds=Thresholds(min_requests=0))
        c = CanaryCollector(Settings(prometheus_url=prom.url, canary_timeout=10.0), services=[svc])
        await c.start()
        try:
            # wait (bounded) until two scrapes give rates and the exemplars are stored
            deadline = time.monotonic() + 60
            while True:
                s = (await c.collect()).services[0]
                if s.canary.p99_s is not None and len(s.exemplars) >= 2:
                    break
                assert time.monotonic() < deadline, (
                    f"no p99/exemplars yet: {s.reason} {s.errors} {prom.log()[-800:]}"
                )
                await asyncio.sleep(0.5)
        finally:
            await c.close()
    assert s.canary.p99_s == pytest.approx(CANARY_P99, rel=1e-9)
    assert [e.trace_id for e in s.exemplars] == ["slowest-1", "slow-1"]  # slowest first
    assert [e.value_s for e in s.exemplars] == [4.0, 2.0]
    assert [e.bucket for e in s.exemplars] == ["+Inf", "2.5"]
    assert "fast-1" not in {e.trace_id for e in s.exemplars}  # below the p99 bucket: not the tail
    assert s.queries["canary.exemplars"] == 'http_request_duration_seconds_bucket{version="canary"}'
