"""The agent's /metrics and /debug/pprof/profile, scraped over HTTP from a Runtime whose
bus carries real payloads; promtool checks every live scrape."""

from __future__ import annotations

import gzip
import itertools
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import test_profiles_sampler
from prometheus_client.parser import text_string_to_metric_families

from ebpftop.cli.metrics import bounds, start_metrics_server
from ebpftop.cli.metrics.server import parse_listen
from ebpftop.collectors.canary.data import CanaryData, DriftTest, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.verdict import MetricVerdict, Verdict
from ebpftop.collectors.flows.model import FlowPath, FlowRecord, FlowsData, TcpEvent
from ebpftop.collectors.identity.model import Identity
from ebpftop.collectors.profiles import pprof
from ebpftop.collectors.profiles.model import Profile, ProfilesData, StackSample, make_tags
from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.collectors.selfcost.model import STATS_ON, BpfStats, ProgCost, SelfCostData
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings

burner = test_profiles_sampler.burner  # a CPU-burning process tagged burner-svc/test/1.2.3

HOSTILE = 'a"b\\c\nd\x1b[31m' + "z" * 10_000


class Agent:
    """A Runtime with no collectors: the test publishes on its bus, as collectors do."""

    def __init__(self, tmp_path) -> None:
        s = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
        self.runtime = Runtime(s, [])
        self.seq = 0
        self.now = time.time()
        self.server = start_metrics_server(self.runtime, "127.0.0.1:0")

    def publish(self, source: str, data, health: Health | None = None) -> None:
        self.seq += 1
        self.now += 1.0
        health = health or Health(HealthState.OK, last_ok=self.now)
        self.runtime.bus.publish(Snapshot(source, self.seq, self.now, health, data))

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.server.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def scrape(self) -> str:
        status, body, _ = self.get("/metrics")
        assert status == 200
        text = body.decode()
        promtool(text)
        return text


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    try:
        yield a
    finally:
        a.server.close()


def promtool(text: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool")
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def series(text: str) -> int:
    return sum(len(v) for v in samples(text).values())


def one(found: dict, **labels: str) -> float:
    hits = [v for k, v in found.items() if all((name, value) in k for name, value in labels.items())]
    assert len(hits) == 1, (labels, found)
    return hits[0]


# --- payloads, built with the real dataclasses ----------------------------------------


def flow(
    sport: int,
    *,
    dst: str = "10.9.0.2",
    pid: int | None = 100,
    sent: int = 1000,
    got: int = 500,
    first_seen: float,
    proto: str = "tcp",
    retransmits: int = 0,
    bps: float | None = 10.0,
) -> FlowRecord:
    """An outgoing connection from 10.9.0.1:sport: `sent` bytes out, `got` back."""
    paths = (
        FlowPath("eth0", "egress", True, sent // 100, sent, None, None),
        FlowPath("eth0", "ingress", False, got // 100, got, None, None),
    )
    return FlowRecord(
        "eth0",
        "egress",
        proto,
        "10.9.0.1",
        sport,
        dst,
        443,
        (sent + got) // 100,
        sent + got,
        bps,
        None,
        first_seen,
        first_seen + 1,
        retransmits=retransmits,
        pid=pid,
        paths=paths,
    )


def flows(records, owners=(), events=(), **kw) -> FlowsData:
    return FlowsData(
        flows=tuple(records),
        flows_tracked=len(records),
        total_bytes=sum(r.bytes for r in records),
        total_packets=sum(r.packets for r in records),
        total_bps=123.0,
        total_pps=4.0,
        evictions=kw.get("evictions", 0),
        update_failures=0,
        not_ip_packets=0,
        truncated_packets=0,
        events_total=len(events),
        lost_events=2,
        tcp_events_error=None,
        recent_events=tuple(events),
        owners=tuple(owners),
    )


CHECKOUT = Identity(
    100, comm="checkout", service="checkout", namespace="shop", pod="checkout-7d9", unit="x.scope"
)


def rules(comment: str = "block the scanner") -> RulesData:
    rec = RuleRecord(
        id=7,
        position=0,
        action="deny",
        text="deny tcp dport 23",
        packets=42,
        bytes=4200,
        pps=None,
        bps=None,
        last_hit=None,
        author="me",
        created=0.0,
        expires=None,
        expired=False,
        comment=comment,
    )
    return RulesData((rec,), enforcing=1, attached=("eth0 ingress",), generation=1, max_rules=1024)


def canary() -> CanaryData:
    checks = (
        MetricVerdict("p99", Verdict.FAIL, 1.9, 1.2, "s", breaches=3),
        MetricVerdict("error_ratio", Verdict.PASS, 0.001, 0.02, "ratio"),
    )
    svc = ServiceCanary(
        name="checkout",
        verdict=Verdict.FAIL,
        reason="p99 over",
        metrics=checks,
        canary=VariantMetrics("canary"),
        stable=VariantMetrics("stable"),
        drift=DriftTest("chi2"),
    )
    return CanaryData("http://127.0.0.1:19090", (svc,))


def selfcost() -> SelfCostData:
    prog = ProgCost(11, "flows_tc", "sched_cls", "flows", 5000, 2_500_000, 10.0, 500.0, 0.1)
    return SelfCostData(
        pid=1,
        cpu_percent=3.5,
        rss_bytes=80 << 20,
        threads=6,
        children=1,
        terminal_bps=None,
        terminal_bytes=None,
        stats=BpfStats(STATS_ON),
        programs=(prog,),
    )


def profiles() -> ProfilesData:
    tags = make_tags(
        {"service": "checkout", "env": "prod", "version": "1.4", "trace_id": "4bf9", "source": "bpf"}
    )
    win = Profile("bpf 10s", "bpf", 100.0, 110.0, 25, (StackSample(("main", "price"), 25, tags),))
    long = Profile("bpf 60s", "bpf", 50.0, 110.0, 90, (StackSample(("main", "idle"), 90, tags),))
    return ProfilesData(hz=49, windows=(win, long))


# --- scrapes --------------------------------------------------------------------------


def test_a_live_scrape_passes_promtool_and_carries_every_part(agent):
    start = agent.now
    agent.publish(
        "flows",
        flows(
            [flow(40000, first_seen=start + 0.5, retransmits=2)],
            owners=[CHECKOUT],
            events=[
                TcpEvent(start + 0.6, "connect", "10.9.0.1", 40000, "10.9.0.2", 443, ms=3.0, pid=100),
                TcpEvent(start + 0.7, "connect_fail", "10.9.0.1", 40001, "10.9.0.2", 443, ms=1.0, pid=100),
                # a process the payload did not look up: named by the event's comm
                TcpEvent(
                    start + 0.8, "connect", "10.9.0.1", 40002, "10.9.0.2", 443, ms=700.0, pid=555, comm="curl"
                ),
            ],
        ),
    )
    agent.publish("rules", rules())
    agent.publish("canary", canary())
    agent.publish("selfcost", selfcost())
    agent.publish("profiles", profiles())
    agent.publish("host", None, Health(HealthState.DOWN, "psutil failed", errors=3))
    found = samples(agent.scrape())
    owner = {"service": "checkout", "namespace": "shop", "pod": "checkout-7d9", "unit": ""}
    assert one(found["ebpftop_flow_bytes_total"], direction="transmit", proto="tcp", **owner) == 1000
    assert one(found["ebpftop_flow_bytes_total"], direction="receive", **owner) == 500
    assert one(found["ebpftop_flow_packets_total"], direction="transmit", **owner) == 10
    assert one(found["ebpftop_tcp_retransmits_total"], **owner) == 2
    assert one(found["ebpftop_tcp_connect_failures_total"], **owner) == 1
    assert one(found["ebpftop_tcp_connect_duration_seconds_bucket"], le="0.0025", **owner) == 0
    assert one(found["ebpftop_tcp_connect_duration_seconds_bucket"], le="0.005", **owner) == 1
    assert one(found["ebpftop_tcp_connect_duration_seconds_sum"], **owner) == pytest.approx(0.003)
    assert one(found["ebpftop_tcp_connect_duration_seconds_bucket"], le="0.5", comm="curl") == 0
    assert one(found["ebpftop_tcp_connect_duration_seconds_bucket"], le="1.0", comm="curl") == 1
    assert one(found["ebpftop_peer_bytes_per_second"], peer="10.9.0.2") == 10.0
    assert found["ebpftop_tcp_events_lost_total"][()] == 2
    assert one(found["ebpftop_rule_packets_total"], rule_id="7", comment="block the scanner") == 42
    assert one(found["ebpftop_canary_verdict"], service="checkout", verdict="fail") == 1
    assert one(found["ebpftop_canary_verdict"], service="checkout", verdict="pass") == 0
    assert one(found["ebpftop_canary_check_value"], service="checkout", check="p99_seconds") == 1.9
    assert one(found["ebpftop_canary_check_threshold"], service="checkout", check="p99_seconds") == 1.2
    assert one(found["ebpftop_canary_check_breaches"], service="checkout", check="p99_seconds") == 3
    assert one(found["ebpftop_bpf_program_run_seconds_total"], part="flows", program="flows_tc") == 0.0025
    assert found["ebpftop_agent_resident_memory_bytes"][()] == 80 << 20
    assert found["ebpftop_agent_cpu_usage_ratio"][()] == pytest.approx(0.035)
    assert one(found["ebpftop_source_up"], source="flows") == 1
    assert one(found["ebpftop_source_up"], source="host") == 0
    assert one(found["ebpftop_source_state"], source="host", state="down") == 1
    assert one(found["ebpftop_source_consecutive_errors"], source="host") == 3
    assert not [k for k in found["ebpftop_source_last_good_age_seconds"] if ("source", "host") in k]
    assert "process_cpu_seconds_total" in found  # the agent's own CPU, as every exporter has it


def test_openmetrics_and_gzip_are_served_to_who_asks(agent):
    agent.publish("rules", rules())
    status, body, headers = agent.get(
        "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = gzip.decompress(body).decode()
    assert text.rstrip().endswith("# EOF") and "ebpftop_rule_packets_total{" in text


def test_series_at_10k_flows_with_many_owners_and_peers_stay_within_the_bound(agent):
    start = agent.now
    owners = [
        Identity(1000 + i, comm=f"w{i}", service=f"svc-{i}", pod=f"pod-{i}", namespace="ns")
        for i in range(500)
    ]
    records = [
        flow(
            10000 + (i % 50000),
            dst=f"10.{i % 200}.{i // 200 % 250}.9",
            pid=1000 + i % 500,
            first_seen=start + 0.5,
            proto=("tcp", "udp", "icmp", "gre")[i % 4],
            bps=float(i),
        )
        for i in range(10_000)
    ]
    agent.publish("flows", flows(records, owners=owners))
    agent.publish("rules", rules())
    agent.publish("canary", canary())
    agent.publish("selfcost", selfcost())
    agent.publish("profiles", profiles())
    text = agent.scrape()
    found = samples(text)
    total = series(text)
    assert total <= bounds.MAX_SERIES, (total, bounds.MAX_SERIES)
    owner_sets = {
        tuple(v for k, v in key if k in ("service", "namespace", "pod", "unit", "comm"))
        for key in found["ebpftop_tcp_retransmits_total"]
    }
    assert len(owner_sets) == bounds.MAX_OWNERS + 1  # and one for "other"
    assert {s for s in found["ebpftop_flow_bytes_total"] if ("service", "other") in s}
    assert len(found["ebpftop_peer_bytes_per_second"]) == bounds.MAX_PEERS + 1
    assert ("peer", "other") in next(
        k for k in found["ebpftop_peer_bytes_per_second"] if ("peer", "other") in k
    )
    # nothing is lost by the bound: every byte lands on some owner's series
    sent = sum(v for k, v in found["ebpftop_flow_bytes_total"].items() if ("direction", "transmit") in k)
    assert sent == 1000 * 10_000
    protos = {dict(k)["proto"] for k in found["ebpftop_flow_bytes_total"]}
    assert protos == {"tcp", "udp", "icmp", "other"}


def test_hostile_label_values_are_escaped_and_bounded(agent):
    evil = Identity(100, comm="x", service=HOSTILE, pod=HOSTILE, namespace="ns")
    agent.publish("flows", flows([flow(40000, first_seen=agent.now + 0.5)], owners=[evil]))
    agent.publish("rules", rules(comment=HOSTILE))
    text = agent.scrape()  # promtool accepts it
    found = samples(text)
    (key,) = found["ebpftop_rule_packets_total"]
    comment = dict(key)["comment"]
    assert len(comment) <= bounds.LABEL_LEN
    assert comment.startswith('a"b\\c\\x0ad\\x1b[31m')  # control characters made visible
    owner = dict(next(iter(found["ebpftop_tcp_retransmits_total"])))
    assert len(owner["service"]) <= bounds.LABEL_LEN and len(owner["pod"]) <= bounds.LABEL_LEN
    assert len(text) < 40_000  # no 10 kB value made it through
    assert all(line.startswith(("#", "ebpftop_", "process_")) for line in text.splitlines() if line)


def test_counters_never_go_down_when_flows_leave_the_top_n_and_come_back(agent):
    start = agent.now
    owners = [CHECKOUT, Identity(200, comm="cart", service="cart")]
    a = lambda sent, **kw: flow(40000, first_seen=start + 0.5, sent=sent, got=0, **kw)  # noqa: E731
    b = lambda sent: flow(40001, pid=200, first_seen=start + 0.5, sent=sent, got=0)  # noqa: E731
    steps = [
        [a(1000, retransmits=1), b(1000)],
        [b(3000)],  # a left the top N
        [b(3000)],  # nothing moved: counters hold
        [a(5000, retransmits=4), b(3500)],  # a is back, its growth counted once
        [a(6000, retransmits=4)],
    ]
    history = []
    for records in steps:
        agent.publish("flows", flows(records, owners=owners))
        history.append(samples(agent.scrape()))
    sent = [
        {
            dict(k)["service"]: v
            for k, v in h["ebpftop_flow_bytes_total"].items()
            if ("direction", "transmit") in k
        }
        for h in history
    ]
    assert [s["checkout"] for s in sent] == [1000, 1000, 1000, 5000, 6000]
    assert [s["cart"] for s in sent] == [1000, 3000, 3000, 3500, 3500]
    assert [one(h["ebpftop_tcp_retransmits_total"], service="checkout") for h in history] == [1, 1, 1, 4, 4]


def test_snapshots_between_two_scrapes_are_all_counted_and_old_connections_only_from_a_baseline(agent):
    start = agent.now
    old = flow(40000, first_seen=start - 100, sent=9000, got=0)  # began before the agent looked
    agent.publish(
        "flows", flows([old, flow(40001, first_seen=start + 0.5, sent=100, got=0)], owners=[CHECKOUT])
    )
    # a short connection seen in one snapshot only, between two scrapes
    agent.publish("flows", flows([flow(40002, first_seen=start + 1.5, sent=70, got=0)], owners=[CHECKOUT]))
    agent.publish("flows", flows([flow(40000, first_seen=start - 100, sent=9500, got=0)], owners=[CHECKOUT]))
    found = samples(agent.scrape())
    assert one(found["ebpftop_flow_bytes_total"], direction="transmit", service="checkout") == 100 + 70 + 500


def test_an_idle_owner_gives_its_slot_to_a_new_one(agent, monkeypatch):
    from ebpftop.cli.metrics import flows as flows_mod

    monkeypatch.setattr(flows_mod, "MAX_OWNERS", 2)
    start = agent.now
    ids = [Identity(300 + i, service=f"s{i}") for i in range(3)]
    agent.publish(
        "flows", flows([flow(40000 + i, pid=300 + i, first_seen=start + 0.5) for i in range(3)], owners=ids)
    )
    first = samples(agent.scrape())["ebpftop_tcp_retransmits_total"]
    assert {dict(k)["service"] for k in first} == {"s0", "s1", "other"}
    agent.now += bounds.OWNER_IDLE_S + 1  # s0 and s1 idle since; a new owner arrives
    agent.publish(
        "flows", flows([flow(41000, pid=400, first_seen=agent.now)], owners=[Identity(400, service="new")])
    )
    second = samples(agent.scrape())["ebpftop_tcp_retransmits_total"]
    assert {dict(k)["service"] for k in second} == {"s1", "other", "new"}


def test_a_runtime_swapped_by_a_reload_keeps_the_counters_going(tmp_path):
    """The agent builds a new Runtime on SIGHUP: the server reads whichever runs now."""
    settings = Settings(audit_log=str(tmp_path / "a"), audit_key=str(tmp_path / "k"))
    holder: dict[str, Runtime | None] = {"rt": Runtime(settings, [])}
    server = start_metrics_server(lambda: holder["rt"], "127.0.0.1:0")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(server.url + path, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def sent() -> float:
        status, text = get("/metrics")
        assert status == 200
        promtool(text)
        return one(samples(text)["ebpftop_flow_bytes_total"], direction="transmit", service="checkout")

    try:
        t = time.time()
        snap = Snapshot(
            "flows", 1, t + 1, Health(), flows([flow(40000, first_seen=t + 0.5)], owners=[CHECKOUT])
        )
        holder["rt"].bus.publish(snap)
        assert sent() == 1000
        holder["rt"] = None  # between the old runtime's stop and the new one's start
        assert sent() == 1000
        status, text = get("/debug/pprof/profile")
        assert status == 503 and "starting its collectors again" in text
        holder["rt"] = Runtime(settings, [])  # a new map: the connection starts again from 0
        snap = Snapshot(
            "flows", 1, t + 5, Health(), flows([flow(40001, first_seen=t + 4, sent=300)], owners=[CHECKOUT])
        )
        holder["rt"].bus.publish(snap)
        assert sent() == 1300
    finally:
        server.close()


def test_a_part_that_fails_is_left_out_and_counted_and_the_rest_is_served(agent, monkeypatch):
    from ebpftop.cli.metrics.exporter import Exporter

    def broken(self, store):
        yield from ()
        raise RuntimeError("a payload this exporter cannot read")

    monkeypatch.setattr(Exporter, "_canary", broken)
    agent.publish("rules", rules())
    agent.publish("canary", canary())
    found = samples(agent.scrape())
    assert "ebpftop_canary_verdict" not in found
    assert one(found["ebpftop_rule_packets_total"], rule_id="7") == 42
    assert one(found["ebpftop_metrics_part_failures_total"], part="canary") == 1
    assert one(samples(agent.scrape())["ebpftop_metrics_part_failures_total"], part="canary") == 2


# --- pprof ----------------------------------------------------------------------------


def test_the_profile_endpoint_serves_the_window_asked_for_with_its_labels(agent):
    status, body, _ = agent.get("/debug/pprof/profile?seconds=10")
    assert status == 503 and b"no CPU profile yet" in body
    agent.publish("profiles", profiles())
    status, body, headers = agent.get("/debug/pprof/profile?seconds=10")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    prof = pprof.parse_body(body)
    assert prof.period == round(1e9 / 49) and prof.duration_nanos == 10 * 10**9
    (stack,) = prof.stacks
    assert stack.frames == ("main", "price")
    assert dict(stack.tags) == {"service": "checkout", "env": "prod", "version": "1.4", "trace_id": "4bf9"}
    status, body, _ = agent.get("/debug/pprof/profile?seconds=30")
    assert status == 200 and pprof.parse_body(body).stacks[0].frames == ("main", "idle")  # the 60 s window
    status, body, _ = agent.get("/debug/pprof/profile?seconds=abc%0A")
    assert status == 400 and b"\\x0a" in body


def test_a_profile_that_cannot_be_written_is_a_500_saying_why_and_the_server_goes_on(agent, monkeypatch):
    from ebpftop.cli.metrics import server

    def broken(profile, hz):
        raise ValueError("a window this writer cannot encode")

    monkeypatch.setattr(server, "pprof_bytes", broken)
    agent.publish("profiles", profiles())
    status, body, _ = agent.get("/debug/pprof/profile")
    assert status == 500 and b"cannot encode" in body
    assert agent.get("/metrics")[0] == 200


def test_unknown_paths_are_404_and_the_index_names_the_endpoints(agent):
    status, body, _ = agent.get("/")
    assert status == 200 and b"/metrics" in body
    assert agent.get("/nope")[0] == 404


# --- the listener ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [("9433", "HOST:PORT"), (":9433", "HOST:PORT"), ("127.0.0.1:x", "port"), ("127.0.0.1:70000", "port")],
)
def test_a_bad_address_is_refused_naming_it(text, problem):
    with pytest.raises(ValueError, match=problem) as exc:
        parse_listen(text)
    assert text in str(exc.value)


def test_ipv6_and_a_non_loopback_address_are_served_and_the_latter_said(tmp_path):
    runtime = Runtime(Settings(audit_log=str(tmp_path / "a"), audit_key=str(tmp_path / "k")), [])
    said: list[str] = []
    for listen in ("[::1]:0", "127.0.0.1:0"):
        server = start_metrics_server(runtime, listen, say=said.append)
        try:
            with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
                assert resp.status == 200
        finally:
            server.close()
    assert said == []
    server = start_metrics_server(runtime, "0.0.0.0:0", say=said.append)
    server.close()
    assert len(said) == 1 and "beyond this host" in said[0]


# --- for real: the flows collector's BPF on two namespaces ----------------------------


@pytest.mark.root
@pytest.mark.integration
def test_the_real_flows_collector_scraped_over_http_names_its_owners(tmp_path):
    import asyncio

    from test_identity import services

    from ebpftop.collectors.flows.collector import FlowsCollector

    def wanted(found, tag):
        sent = found.get("ebpftop_flow_bytes_total", {})
        server = sum(v for k, v in sent.items() if ("service", "check out") in k)
        client = found.get("ebpftop_tcp_connect_duration_seconds_count", {})
        connects = sum(v for k, v in client.items() if ("unit", f"cli-{tag}.scope") in k)
        return server > 0 and connects > 0

    async def run(tag):
        s = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
        runtime = Runtime(s, [FlowsCollector([f"{tag}s", f"{tag}c"], interval=0.5)])
        await runtime.start()
        server = start_metrics_server(runtime, "127.0.0.1:0")

        def scrape() -> str:
            with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
                return resp.read().decode()

        try:
            end, text, counts = time.monotonic() + 90, "", []
            while time.monotonic() < end:
                await asyncio.sleep(0.5)
                text = await asyncio.to_thread(scrape)
                found = samples(text)
                counts.append(found.get("ebpftop_flow_bytes_total", {}))
                if wanted(found, tag):
                    return text, counts
            raise AssertionError(f"no owned flows scraped in 90 s:\n{text[-3000:]}")
        finally:
            server.close()
            await runtime.stop()

    with services("ebmx" + secrets.token_hex(2)) as svc:
        text, counts = asyncio.run(run(svc["tag"]))
    promtool(text)
    found = samples(text)
    assert one(found["ebpftop_source_up"], source="flows") == 1
    assert found["ebpftop_flows_tracked"][()] >= 1
    # every scrape's counters at least the previous one's, for every label set
    for before, after in itertools.pairwise(counts):
        assert all(after.get(k, 0) >= v for k, v in before.items())


@pytest.mark.root
@pytest.mark.integration
def test_the_agents_profile_endpoint_opens_in_go_tool_pprof_with_the_burners_labels(burner, tmp_path):
    import asyncio

    from test_pprof_write import go_pprof

    from ebpftop.collectors.profiles.collector import ProfilesCollector

    async def run():
        s = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
        runtime = Runtime(s, [ProfilesCollector(hz=49, interval=0.5)])
        await runtime.start()
        server = start_metrics_server(runtime, "127.0.0.1:0")

        def get() -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(server.url + "/debug/pprof/profile?seconds=10", timeout=30) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        try:
            end, status, body = time.monotonic() + 90, 0, b""
            while time.monotonic() < end:
                await asyncio.sleep(0.5)
                status, body = await asyncio.to_thread(get)
                if status == 200:
                    prof = pprof.parse_body(body)
                    mine = sum(s.count for s in prof.stacks if dict(s.tags).get("pid") == str(burner.pid))
                    if mine >= 20:
                        return body
            raise AssertionError(f"no burner samples served in 90 s: {status} {body[:300]!r}")
        finally:
            server.close()
            await runtime.stop()

    body = asyncio.run(run())
    path = tmp_path / "agent.pb.gz"
    path.write_bytes(body)
    assert test_profiles_sampler.HOT in go_pprof("-top", str(path))
    tags = go_pprof("-tags", str(path))
    for value in ("burner-svc", "test", "1.2.3", str(burner.pid)):
        assert value in tags


def test_a_source_that_has_not_sampled_yet_is_starting_not_down(tmp_path):
    """An agent compiling its BPF (up to a minute on a loaded node) must not read as a node
    whose flows are down: the fleet view ranks a down source near the top."""
    from ebpftop.core.collector import Collector

    class Slow(Collector):
        name = "flows"

        async def collect(self) -> None:
            return None

    s = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
    runtime = Runtime(s, [Slow()])  # produces flows, never started: no snapshot yet
    server = start_metrics_server(runtime, "127.0.0.1:0")
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
            text = resp.read().decode()
        promtool(text)
        found = samples(text)
        assert one(found["ebpftop_source_state"], source="flows", state="starting") == 1
        assert one(found["ebpftop_source_state"], source="flows", state="down") == 0
        assert one(found["ebpftop_source_up"], source="flows") == 0
        runtime.bus.publish(Snapshot("flows", 1, time.time(), Health(HealthState.DOWN, "attach failed")))
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
            found = samples(resp.read().decode())
        assert one(found["ebpftop_source_state"], source="flows", state="down") == 1
        assert one(found["ebpftop_source_state"], source="flows", state="starting") == 0
    finally:
        server.close()
