"""Snapshot tests (pytest-textual-snapshot) of each real pane, its detail views and its
dialogs at 80x24 and 160x48, fed the payloads the collectors publish (FlowsData,
RulesData, CanaryData with RolloutData, ProfilesData) on the runtime's bus, with a
frozen clock, so an SVG changes only when what the operator sees changes.

The payloads are a believable incident: a checkout canary failing on 5xx while a
search canary passes, a deny rule dropping a scraper, flows with retransmits and slow
connects, profiles tagged by service, env and trace. Each history (flow rates, rule
rates, canary evaluations) is published as a series of snapshots, so the charts and
sparklines have something to draw.

Regenerate after an intended change: `.venv/bin/python -m pytest
tests/test_pane_snapshots.py --snapshot-update`, then look at the SVGs in
tests/__snapshots__ before committing.
"""

from __future__ import annotations

import pytest
from app_support import NOW, T0, host_data, make_app, ok, snap

from ebpftop.collectors.canary.data import Bucket, CanaryData, DriftTest, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.exemplars import Exemplar
from ebpftop.collectors.canary.verdict import MetricVerdict, Verdict
from ebpftop.collectors.flows.model import FlowRecord, FlowsData, IfaceStatus, TcpEvent
from ebpftop.collectors.profiles.aggregate import summarize
from ebpftop.collectors.profiles.model import ProfilesData, SourceStatus, StackSample, make_tags
from ebpftop.collectors.rollout.model import Backend, RolloutData, RolloutState
from ebpftop.collectors.rules.model import RuleRecord, RulesData

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
STEPS = 8  # snapshots of history per source, one every STEP seconds up to NOW - 1
STEP = 15.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

# --- flows ---------------------------------------------------------------------------------


def _flow(src, sport, dst, dport, *, bps, total, proto="tcp", direction="egress", **kw) -> FlowRecord:
    return FlowRecord(
        "eth0",
        direction,
        proto,
        src,
        sport,
        dst,
        dport,
        packets=total // 900,
        bytes=total,
        bps=bps,
        pps=bps / 900,
        first_seen=T0 - 300,
        last_seen=NOW - 1,
        **kw,
    )


def _event(kind: str, at: float, dport: int, ms: float | None, comm: str, pid: int) -> TcpEvent:
    return TcpEvent(NOW - at, kind, "10.0.0.4", 41000 + dport % 100, "10.0.1.20", dport, ms, pid, comm)


SLOW_CONNECT = _event("connect", 3, 5432, 212.0, "checkout", 2211)
EVENTS = (
    _event("connect", 9, 5432, 0.4, "checkout", 2211),
    _event("retransmit", 7, 5432, None, "checkout", 2211),
    _event("connect_fail", 5, 6379, 1003.0, "search", 3100),
    SLOW_CONNECT,
    _event("close", 2, 443, 5200.0, "nginx", 812),
)


def flows(scale: float = 1.0) -> tuple[FlowRecord, ...]:
    """Ingress web traffic to nginx, checkout and search talking to their backends, DNS,
    one flow with no process (forwarded), one with retransmits and a slow connect."""
    web = dict(pid=812, comm="nginx", service="nginx")
    checkout = dict(pid=2211, comm="checkout", service="checkout")
    search = dict(pid=3100, comm="search", service="search")
    return (
        _flow(
            "198.51.100.23",
            52114,
            "10.0.0.4",
            443,
            bps=2.4e6 * scale,
            total=91_000_000,
            direction="ingress",
            **web,
        ),
        _flow("10.0.0.4", 443, "198.51.100.23", 52114, bps=8.1e6 * scale, total=310_000_000, **web),
        _flow(
            "203.0.113.77",
            40222,
            "10.0.0.4",
            443,
            bps=640e3 * scale,
            total=12_400_000,
            direction="ingress",
            **web,
        ),
        _flow(
            "10.0.0.4",
            41032,
            "10.0.1.20",
            5432,
            bps=1.3e6 * scale,
            total=48_000_000,
            retransmits=37,
            connect_latency_ms=212.0,
            events=(EVENTS[0], EVENTS[1], SLOW_CONNECT),
            **checkout,
        ),
        _flow(
            "10.0.0.4",
            41033,
            "10.0.1.20",
            5432,
            bps=420e3 * scale,
            total=9_800_000,
            connect_latency_ms=0.4,
            **checkout,
        ),
        _flow(
            "10.0.0.4",
            39870,
            "10.0.1.31",
            6379,
            bps=96e3 * scale,
            total=2_100_000,
            retransmits=4,
            connect_latency_ms=1003.0,
            **search,
        ),
        _flow(
            "10.0.0.4",
            39871,
            "10.0.1.31",
            9200,
            bps=310e3 * scale,
            total=15_600_000,
            connect_latency_ms=0.9,
            **search,
        ),
        _flow(
            "10.0.0.4",
            53311,
            "10.0.0.2",
            53,
            proto="udp",
            bps=3.1e3 * scale,
            total=140_000,
            pid=640,
            comm="systemd-resolve",
        ),
        _flow(
            "192.0.2.10", 33000, "10.244.1.7", 8080, bps=52e3 * scale, total=4_000_000, direction="ingress"
        ),
        _flow("10.0.0.4", 0, "10.0.0.1", 0, proto="icmp", bps=84.0 * scale, total=8_400),
    )


def flows_data(scale: float = 1.0, evictions: int = 12) -> FlowsData:
    fl = flows(scale)
    return FlowsData(
        flows=fl,
        flows_tracked=1423,
        total_bytes=sum(f.bytes for f in fl),
        total_packets=sum(f.packets for f in fl),
        total_bps=sum(f.bps or 0 for f in fl),
        total_pps=sum(f.pps or 0 for f in fl),
        evictions=evictions,  # growing in the last sample: an alarm in the header
        update_failures=0,
        not_ip_packets=3,
        truncated_packets=0,
        events_total=4180,
        lost_events=0,
        tcp_events_error=None,
        recent_events=EVENTS,
        ifaces=(IfaceStatus("eth0", 2, "tcx"), IfaceStatus("eth1", 3, "tc")),
        max_flows=65536,
    )


# --- rules ---------------------------------------------------------------------------------


def _rule(pos, action, text, *, packets, pps, author, comment="", expires=None, session=False, hist=()):
    return RuleRecord(
        id=pos + 1,
        position=pos,
        action=action,
        text=text,
        packets=packets,
        bytes=packets * 74,
        pps=pps,
        bps=None if pps is None else pps * 74,
        last_hit=NOW - 2 if packets else None,
        author=author,
        created=T0 - 3600,
        expires=expires,
        expired=False,
        comment=comment,
        session=session,
        history=hist,
    )


def rules_data(problem: str | None = None) -> RulesData:
    ramp = tuple(float(x) for x in (40, 90, 210, 380, 520, 610, 640, 655))
    recs = (
        _rule(
            0,
            "deny",
            'deny tcp from 203.0.113.0/24 to any port 443 ttl 30m "scraper"',
            packets=48_213,
            pps=655.0,
            author="alice@ops",
            comment="scraper",
            expires=NOW + 1740,
            hist=ramp,
        ),
        _rule(
            1,
            "count",
            "count tcp to 10.0.1.20 port 5432",
            packets=9_120,
            pps=31.0,
            author="ebpftop",
            session=True,
            hist=(20.0, 28.0, 30.0, 31.0),
        ),
        _rule(
            2,
            "allow",
            'allow tcp from 10.0.0.0/8 to any port 22 "bastion"',
            packets=311,
            pps=0.2,
            author="root",
            comment="bastion",
            hist=(0.0, 0.5, 0.2),
        ),
        _rule(3, "deny", "deny udp to any port 11211", packets=0, pps=0.0, author="bob@sec"),
        _rule(
            4,
            "count",
            "count icmp",
            packets=1_204,
            pps=1.1,
            author="alice@ops",
            expires=NOW + 300,
            hist=(1.0, 1.2, 1.1),
        ),
    )
    enforcing = sum(1 for r in recs if r.action != "count")
    return RulesData(recs, enforcing, ("eth0 ingress", "eth0 egress"), 7, 256, problem)


# --- canary and rollout --------------------------------------------------------------------


def _service(
    name: str, verdict: Verdict, *, c_p99, s_p99, c_err, s_err, c_rps, s_rps, reason, at, exemplars=()
) -> ServiceCanary:
    failing = verdict is Verdict.FAIL
    metrics = (
        MetricVerdict("p99", Verdict.PASS, c_p99, 1.2, "s", 0, f"canary p99 {c_p99 * 1000:.0f} ms ok"),
        MetricVerdict(
            "error_ratio",
            verdict,
            c_err,
            0.005,
            "ratio",
            3 if failing else 0,
            reason if failing else "canary 5xx ratio ok",
        ),
        MetricVerdict(
            "p99_ratio",
            Verdict.WARN if failing else Verdict.PASS,
            c_p99 / s_p99,
            1.2,
            "x",
            1 if failing else 0,
            f"p99 canary/stable {c_p99 / s_p99:.2f}x",
        ),
        MetricVerdict(
            "drift",
            Verdict.WARN if failing else Verdict.PASS,
            0.303 if failing else 0.02,
            0.1,
            "V",
            0,
            "latency distributions differ" if failing else "no drift",
        ),
    )
    return ServiceCanary(
        name=name,
        verdict=verdict,
        reason=reason,
        metrics=metrics,
        canary=VariantMetrics(
            "canary",
            c_p99,
            c_err,
            c_rps,
            c_rps * 60,
            (Bucket("0.25", c_rps * 50), Bucket("+Inf", c_rps * 60)),
        ),
        stable=VariantMetrics("stable", s_p99, s_err, s_rps, s_rps * 60),
        drift=DriftTest(
            "chi-square test of homogeneity",
            1157.0 if failing else 4.1,
            6,
            1.07e-246 if failing else 0.66,
            0.303 if failing else 0.02,
            bins=7,
        ),
        exemplars=tuple(exemplars),
        variant_label="version",
        window="1m",
        evaluated_at=at,
    )


def canary_data(at: float, i: int = STEPS - 1, *, failing: bool = True) -> CanaryData:
    """Evaluation `i` of STEPS: checkout's canary error ratio climbs through the
    threshold (when `failing`); search passes throughout."""
    err = 0.001 + (0.021 * i / (STEPS - 1) if failing else 0.0)
    checkout = _service(
        "checkout",
        Verdict.FAIL if failing and err > 0.005 else Verdict.PASS,
        c_p99=(0.31 + 0.02 * i) if failing else 0.205,
        s_p99=0.2,
        c_err=err,
        s_err=0.001,
        c_rps=21.9,
        s_rps=188.0,
        reason=f"canary 5xx ratio {err * 100:.1f}% > 0.5% for 3/3 evaluations" if failing else "",
        at=at,
        exemplars=(Exemplar(TRACE, 0.92, at, "1.0", {"trace_id": TRACE}),) if failing else (),
    )
    search = _service(
        "search",
        Verdict.PASS,
        c_p99=0.088,
        s_p99=0.091,
        c_err=0.0004,
        s_err=0.0005,
        c_rps=40.2,
        s_rps=402.0,
        reason="",
        at=at,
    )
    return CanaryData("http://prometheus.monitoring:9090", (checkout, search))


def rollout_data() -> RolloutData:
    state = RolloutState(
        "checkout",
        "haproxy",
        "/run/haproxy/admin.sock",
        "v41",
        "v42",
        90.0,
        10.0,
        "Progressing",
        backends=(
            Backend("stable", "stable", 90, "UP", "10.0.1.40:8080"),
            Backend("canary", "canary", 10, "UP", "10.0.1.41:8080"),
        ),
    )
    return RolloutData((state,))


# --- profiles --------------------------------------------------------------------------------


def _tags(service: str, version: str, pid: int, **more: str) -> tuple:
    return make_tags(
        {
            "service": service,
            "version": version,
            "pid": str(pid),
            "env": "prod",
            "comm": service,
            "source": "bpf",
            **more,
        }
    )


def profiles_data() -> ProfilesData:
    stable = _tags("checkout", "stable", 2211)
    canary = _tags("checkout", "canary", 2290)
    search = _tags("search", "v7", 3100)
    stacks = [
        StackSample(("main", "serve", "handle", "json.encode"), 610, stable),
        StackSample(("main", "serve", "handle", "cart.total"), 190, stable),
        StackSample(("main", "serve", "handle", "regexp.compile"), 420, canary),
        StackSample(("main", "serve", "handle", "json.encode"), 95, canary),
        StackSample(("main", "index", "score", "bm25"), 530, search),
        StackSample(("main", "gc", "mark"), 120, search),
    ]
    url = "http://10.0.0.4:6060/debug/pprof/profile"
    traced = make_tags({"service": "checkout", "env": "prod", "trace_id": TRACE, "source": url})
    other = make_tags(
        {"service": "checkout", "env": "prod", "trace_id": "00f067aa0ba902b70000000000000001", "source": url}
    )
    pprof = [
        StackSample(("main", "handler", "slowPath", "crypto/sha256.block"), 70, traced),
        StackSample(("main", "handler", "fastPath"), 30, other),
    ]
    return ProfilesData(
        hz=49,
        windows=(summarize("bpf 10s", "bpf", NOW - 11, NOW - 1, stacks),),
        captures=(summarize(f"pprof {url}", url, NOW - 11, NOW - 1, pprof),),
        sources=(SourceStatus("bpf", "ok", "", NOW - 1), SourceStatus(url, "ok", "", NOW - 1)),
    )


# --- publishing --------------------------------------------------------------------------------


def publish_real(runtime, *, canary_failing: bool = True, rules_problem: str | None = None) -> None:
    """Every source with its real payload, histories included, latest at NOW - 1."""
    bus = runtime.bus
    bus.publish(snap("host", host_data(hostname="node-7.prod"), ok(NOW - 1), t=NOW - 1))
    for i in range(STEPS):
        t = NOW - 1 - (STEPS - 1 - i) * STEP
        seq = i + 1
        bus.publish(
            snap("flows", flows_data(0.4 + 0.6 * i / (STEPS - 1), evictions=4 * i), ok(t), seq=seq, t=t)
        )
        bus.publish(snap("canary", canary_data(t, i, failing=canary_failing), ok(t), seq=seq, t=t))
    bus.publish(snap("rules", rules_data(rules_problem), ok(NOW - 1), t=NOW - 1))
    bus.publish(snap("rollout", rollout_data(), ok(NOW - 1), t=NOW - 1))
    bus.publish(snap("profiles", profiles_data(), ok(NOW - 1), t=NOW - 1))


def _before(*keys: str, **kw):
    async def run_before(pilot) -> None:
        publish_real(pilot.app.runtime, **kw)
        await pilot.pause()
        # The start notice about rules enforced from before would cover the panes.
        pilot.app.clear_notifications()
        if keys:
            await pilot.press(*keys)
        # A dialog opened by a key waits for an answer: let it draw, never wait on it.
        for _ in range(3):
            await pilot.pause(0.05)

    return run_before


def shot(snap_compare, tmp_path, size, *keys: str, app=None, **kw) -> bool:
    return snap_compare(app or make_app(tmp_path), terminal_size=size, run_before=_before(*keys, **kw))


# --- the panes ---------------------------------------------------------------------------------


@SIZES
def test_flows_pane(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "1")


@SIZES
def test_flows_grouped_by_process(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "1", "g")


@SIZES
def test_flow_detail(snap_compare, tmp_path, size):
    # The checkout flow with retransmits and a 212 ms connect: third by rate.
    assert shot(snap_compare, tmp_path, size, "1", "down", "down", "enter")


@SIZES
def test_rules_pane(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "2", "down")


@SIZES
def test_rules_pane_with_a_problem(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "2", rules_problem="rule 4 in the kernel, not in metadata")


@SIZES
def test_rule_editor_with_preview(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "2", "a", *"deny tcp to 10.0.1.20 port 5432")


@SIZES
def test_canary_failing_with_rollout(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "3")


@SIZES
def test_canary_passing(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "3", canary_failing=False)


@SIZES
def test_rollback_confirmation(snap_compare, tmp_path, size):
    # A real HAProxy controller (built from the settings, not contacted before the
    # operator types the service name): the plan lists the runtime API commands.
    app = make_app(
        tmp_path,
        rollout_controller="haproxy",
        rollout_service="checkout",
        rollout_haproxy_socket="/run/haproxy/admin.sock",
    )
    assert shot(snap_compare, tmp_path, size, "3", "R", app=app)


@SIZES
def test_profiles_pane(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "4")


@SIZES
def test_profile_detail(snap_compare, tmp_path, size):
    assert shot(snap_compare, tmp_path, size, "4", "enter")
