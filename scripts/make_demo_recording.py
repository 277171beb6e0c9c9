#!/usr/bin/env python3
"""Regenerate tests/data/demo.rec (and damaged.rec): a small, realistic recording.

`demo.rec` is what the Pilot tests replay (synthetic: the README pictures replay the real
lab, screenshots/lab.rec.gz): 20 s at 1 Hz of the lab story (the "checkout" canary goes
bad from second 9 to 14, a marker at 11 s; the rules source is down). Deterministic
(fixed seed and clock) and written by the real Recorder from the real dataclasses; a
test compares the committed file with this script's output, so rerun it when a payload
type changes. `damaged.rec` is demo.rec cut at line DAMAGED_AT.

Usage: .venv/bin/python scripts/make_demo_recording.py [--out-dir tests/data]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

from ebpftop.collectors.canary.collector import drift_test
from ebpftop.collectors.canary.data import Bucket, CanaryData, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.exemplars import Exemplar
from ebpftop.collectors.canary.verdict import Evaluator, Measured, Thresholds
from ebpftop.collectors.flows.model import FlowRecord, FlowsData, IfaceStatus, TcpEvent
from ebpftop.collectors.profiles.aggregate import summarize
from ebpftop.collectors.profiles.model import ProfilesData, SourceStatus, StackSample, make_tags
from ebpftop.collectors.rollout.model import Backend, RolloutData, RolloutState
from ebpftop.core.model import Health, HealthState, HostData, Marker, NicRate, Snapshot
from ebpftop.core.record import Recorder

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: fixed, so ages and clocks are stable
SECONDS = 20
HOST = "demo-node-1"
GIB = 1024**3
DAMAGED_AT = 30  # line number cut in half in damaged.rec


def host_frames(rng: random.Random) -> list[Snapshot]:
    frames = []
    load = [0.42, 0.38, 0.31]
    mem_total = 16 * GIB
    for i in range(SECONDS):
        t = START + 0.05 + i
        spike = spiking(i)
        cpu = (78.0 + rng.uniform(-6, 9)) if spike else (11.0 + rng.uniform(-3, 5))
        # Load averages follow the CPU with their 1/5/15-minute inertia.
        for k, tau in enumerate((60.0, 300.0, 900.0)):
            target = 4 * cpu / 100
            load[k] += (target - load[k]) * (1 - math.exp(-1 / tau))
        mem_used = int((5.8 + (0.9 if spike else 0.0) + rng.uniform(0, 0.05)) * GIB)
        if i == 0:
            nics: tuple[NicRate, ...] = ()
            rx = tx = None  # a rate needs two samples, as on a live node
        else:
            eth_rx = (48e6 if spike else 6.5e6) * rng.uniform(0.9, 1.1)
            eth_tx = (31e6 if spike else 2.1e6) * rng.uniform(0.9, 1.1)
            veth_rx = (9e6 if spike else 1.2e6) * rng.uniform(0.9, 1.1)
            veth_tx = veth_rx * 0.8
            lo = 350e3 * rng.uniform(0.8, 1.2)
            nics = tuple(
                sorted(
                    (
                        NicRate("eth0", eth_rx, eth_tx, True),
                        NicRate("veth-canary", veth_rx, veth_tx, True),
                        NicRate("lo", lo, lo, True),
                        NicRate("docker0", 0.0, 0.0, False),
                    ),
                    key=lambda n: n.rx_bps + n.tx_bps,
                    reverse=True,
                )
            )
            rx = sum(n.rx_bps for n in nics if n.name != "lo")
            tx = sum(n.tx_bps for n in nics if n.name != "lo")
        data = HostData(
            hostname=HOST,
            kernel="6.1.0-18-amd64",
            uptime_s=86400 * 12 + 3600 * 5 + i,
            cpu_percent=round(cpu, 1),
            cpu_count=8,
            load=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            mem_total=mem_total,
            mem_used=mem_used,
            mem_percent=round(100 * mem_used / mem_total, 1),
            net_rx_bps=rx,
            net_tx_bps=tx,
            nics=nics,
        )
        frames.append(Snapshot("host", i + 1, t, Health(HealthState.OK, "", "", t, 0), data))
    return frames


def spiking(i: int) -> bool:
    return 9 <= i <= 14


def ok(source: str, seq: int, t: float, data: object) -> Snapshot:
    return Snapshot(source, seq, t, Health(HealthState.OK, "", "", t, 0), data)


# The lab's addresses: load generator, HAProxy, stable and canary instances, Prometheus.
LOADGEN, HAPROXY, STABLE, CANARY, PROM = (
    "10.200.0.10",
    "10.200.0.2",
    "10.200.1.11",
    "10.200.1.12",
    "10.200.0.3",
)


def flows_frames(rng: random.Random) -> list[Snapshot]:
    # (iface, direction, src, sport, dst, dport, base bytes/s, bytes per packet, pid, comm, service)
    conns = [
        ("veth-lb", "ingress", LOADGEN, 41822, HAPROXY, 8080, 3.1e6, 900, 812, "haproxy", "haproxy"),
        ("veth-lb", "egress", HAPROXY, 8080, LOADGEN, 41822, 5.2e6, 1300, 812, "haproxy", "haproxy"),
        ("veth-stable", "egress", HAPROXY, 50110, STABLE, 8000, 2.6e6, 850, 812, "haproxy", "checkout"),
        ("veth-stable", "ingress", STABLE, 8000, HAPROXY, 50110, 4.1e6, 1250, 901, "checkout", "checkout"),
        (
            "veth-canary",
            "egress",
            HAPROXY,
            50144,
            CANARY,
            8000,
            0.6e6,
            850,
            812,
            "haproxy",
            "checkout-canary",
        ),
        (
            "veth-canary",
            "ingress",
            CANARY,
            8000,
            HAPROXY,
            50144,
            0.9e6,
            1250,
            933,
            "checkout",
            "checkout-canary",
        ),
        ("veth-prom", "egress", PROM, 38200, CANARY, 9100, 0.04e6, 300, 640, "prometheus", "prometheus"),
        ("eth0", "egress", "192.168.122.40", 22, "192.168.122.1", 53114, 0.012e6, 120, 1, "sshd", None),
    ]
    frames = []
    totals = [[0, 0] for _ in conns]
    retrans = [0] * len(conns)
    for i in range(SECONDS):
        t = START + 0.25 + i
        records = []
        events = []
        for k, (iface, direction, src, sport, dst, dport, bps, size, pid, comm, svc) in enumerate(conns):
            canary = svc == "checkout-canary"
            rate = bps * rng.uniform(0.85, 1.15) * (2.4 if canary and spiking(i) else 1.0)
            pkts = int(rate / size)
            totals[k][0] += int(rate)
            totals[k][1] += pkts
            if canary and spiking(i) and direction == "ingress":
                retrans[k] += rng.randint(3, 9)
                events.append(TcpEvent(t - 0.3, "retransmit", dst, dport, src, sport, None, pid, comm))
            latency = round(rng.uniform(0.18, 0.35) * (6 if canary and spiking(i) else 1), 3)
            records.append(
                FlowRecord(
                    iface,
                    direction,
                    "tcp",
                    src,
                    sport,
                    dst,
                    dport,
                    totals[k][1],
                    totals[k][0],
                    None if i == 0 else float(int(rate)),
                    None if i == 0 else float(pkts),
                    START,
                    t,
                    retrans[k],
                    latency if proto_connects(direction, iface) else None,
                    pid,
                    comm,
                    svc,
                )
            )
        records.sort(key=lambda r: -(r.bps or 0))
        if i % 4 == 1:
            events.append(
                TcpEvent(
                    t - 0.6,
                    "connect",
                    HAPROXY,
                    50200 + i,
                    CANARY,
                    8000,
                    round(rng.uniform(0.2, 0.4), 3),
                    812,
                    "haproxy",
                )
            )
        data = FlowsData(
            flows=tuple(records),
            flows_tracked=len(records) + 23,
            total_bytes=sum(b for b, _ in totals) + 48_000_000,
            total_packets=sum(p for _, p in totals) + 51_000,
            total_bps=None if i == 0 else float(sum(int(r.bps or 0) for r in records)),
            total_pps=None if i == 0 else float(sum(int(r.pps or 0) for r in records)),
            evictions=0,
            update_failures=0,
            not_ip_packets=14 + i,
            truncated_packets=0,
            events_total=40 + 3 * i + len(events),
            lost_events=0,
            tcp_events_error=None,
            recent_events=tuple(events),
            ifaces=tuple(
                IfaceStatus(n, 10 + j, "tcx")
                for j, n in enumerate(("eth0", "veth-lb", "veth-stable", "veth-canary", "veth-prom"))
            ),
            max_flows=65536,
        )
        frames.append(ok("flows", i + 1, t, data))
    return frames


def proto_connects(direction: str, iface: str) -> bool:
    """Connect latency is known on the side that opened the connection."""
    return direction == "egress" and iface != "eth0"


LE = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")


def latency_buckets(requests: float, slow: bool, rng: random.Random) -> tuple[Bucket, ...]:
    shares = (
        (0.22, 0.55, 0.85, 0.95, 0.985, 0.995, 1.0) if not slow else (0.12, 0.3, 0.55, 0.72, 0.86, 0.97, 1.0)
    )
    return tuple(
        Bucket(le, round(requests * min(1.0, s * rng.uniform(0.995, 1.0)), 1) if le != "+Inf" else requests)
        for le, s in zip(LE, shares, strict=True)
    )


def canary_frames(rng: random.Random) -> list[Snapshot]:
    evaluator = Evaluator(Thresholds())
    frames = []
    for i in range(SECONDS):
        t = START + 0.4 + i
        slow = spiking(i)
        c_rps, s_rps = 21.0 * rng.uniform(0.95, 1.05), 189.0 * rng.uniform(0.95, 1.05)
        c_req, s_req = round(c_rps * 60, 1), round(s_rps * 60, 1)
        c_p99 = round((1.6 if slow else 0.21) * rng.uniform(0.9, 1.1), 3)
        s_p99 = round(0.19 * rng.uniform(0.9, 1.1), 3)
        c_err = round((0.031 if slow else 0.0018) * rng.uniform(0.8, 1.2), 4)
        canary = VariantMetrics(
            "canary", c_p99, c_err, round(c_rps, 2), c_req, latency_buckets(c_req, slow, rng)
        )
        stable = VariantMetrics(
            "stable",
            s_p99,
            round(0.0012 * rng.uniform(0.8, 1.2), 4),
            round(s_rps, 2),
            s_req,
            latency_buckets(s_req, False, rng),
        )
        drift, chi = drift_test(canary.buckets, stable.buckets)
        verdict = evaluator.evaluate(Measured(c_p99, s_p99, c_err, c_req, chi, drift.note))
        exemplars = ()
        if slow:
            exemplars = tuple(
                Exemplar(
                    f"{rng.getrandbits(128):032x}",
                    round(c_p99 * rng.uniform(1.0, 1.4), 3),
                    t - rng.uniform(1, 20),
                    "2.5",
                    {"version": "canary"},
                )
                for _ in range(3)
            )
        svc = ServiceCanary(
            name="checkout",
            verdict=verdict.verdict,
            reason=verdict.reason,
            metrics=verdict.metrics,
            canary=canary,
            stable=stable,
            drift=drift,
            exemplars=exemplars,
            variant_label="version",
            window="1m",
            evaluated_at=t,
        )
        frames.append(ok("canary", i + 1, t, CanaryData(f"http://{PROM}:9090", (svc,))))
    return frames


def profiles_frames(rng: random.Random) -> list[Snapshot]:
    def tags(version: str, pid: int) -> tuple[tuple[str, str], ...]:
        return make_tags(
            {"service": "checkout", "env": "demo", "version": version, "pid": str(pid), "comm": "checkout"}
        )

    base = ("_start", "main", "http.serve", "checkout.handle")
    frames = []
    for i in range(1, SECONDS, 2):  # a 10 s window every 2 s
        t = START + 0.6 + i
        slow = any(spiking(j) for j in range(i - 9, i + 1))
        hot = 9 if slow else 1
        stacks = [
            StackSample((*base, "cart.total", "decimal.add"), 40 + rng.randint(0, 9), tags("stable", 901)),
            StackSample((*base, "json.encode", "reflect.value"), 55 + rng.randint(0, 9), tags("stable", 901)),
            StackSample((*base, "db.query", "net.write"), 22 + rng.randint(0, 5), tags("stable", 901)),
            StackSample((*base, "json.encode", "reflect.value"), 8 + rng.randint(0, 3), tags("canary", 933)),
            StackSample(
                (*base, "pricing.rules", "regexp.compile"),
                (30 + rng.randint(0, 9)) * hot,
                tags("canary", 933),
            ),
            StackSample(
                ("_start", "runtime.gcBgMarkWorker", "runtime.scanobject"),
                12 * (3 if slow else 1),
                tags("canary", 933),
            ),
        ]
        window = summarize("bpf 10s", "bpf", t - 10, t, stacks)
        data = ProfilesData(49, (window,), (), (SourceStatus("bpf", "ok", "", t),))
        frames.append(ok("profiles", i // 2 + 1, t, data))
    return frames


def rollout_frames() -> list[Snapshot]:
    """HAProxy splitting checkout 90/10 between stable and canary, as its runtime API reports it."""
    endpoint = "runtime API /run/ebpftop-lab/haproxy.sock, backend be_checkout"
    state = RolloutState(
        service="checkout",
        controller="haproxy",
        endpoint=endpoint,
        stable_revision="stable1",
        canary_revision="canary1",
        stable_weight=90.0,
        canary_weight=10.0,
        phase="progressing",
        last_change=START - 300.0,
        backends=(
            Backend("stable1", "stable", 90, "running", f"{STABLE}:8000"),
            Backend("canary1", "canary", 10, "running", f"{CANARY}:8000"),
        ),
        can_rollback=True,
        can_promote=False,
        promote_reason="HAProxy: promote is a release decision; set weights in haproxy.cfg",
    )
    return [ok("rollout", i // 2 + 1, START + 0.5 + i, RolloutData((state,))) for i in range(0, SECONDS, 2)]


def unavailable_frames() -> list[Snapshot]:
    """Sources without a payload type yet, as a node reports them when they fail to start."""
    t = START + 0.2
    return [Snapshot("rules", 1, t, Health(HealthState.DOWN, "rule maps not loaded", "run as root", None, 1))]


def marker_frames() -> list[Snapshot]:
    t = START + 11.4
    data = Marker("p99 latency spike on checkout; CPU pegged", "oncall")
    return [Snapshot("marker", 1, t, Health(HealthState.OK, "", "", t, 0), data)]


def write(path: str) -> int:
    if os.path.exists(path):
        os.unlink(path)  # the Recorder appends; the demo must be exactly one session
    rng = random.Random(42)
    frames = sorted(
        host_frames(rng)
        + flows_frames(rng)
        + canary_frames(rng)
        + profiles_frames(rng)
        + rollout_frames()
        + unavailable_frames()
        + marker_frames(),
        key=lambda s: s.time,
    )
    rec = Recorder(path, 16 * 1024 * 1024, clock=lambda: START, flush_interval=3600, host=HOST)
    if not rec.open():
        raise SystemExit(f"cannot write {path}: {rec.status.reason}")
    for snap in frames:
        rec(snap)
    rec.close()
    if rec.status.reason != "closed":
        raise SystemExit(f"writing {path} failed: {rec.status.reason}")
    return len(frames)


def cut(src: str, dst: str, line: int) -> None:
    with open(src, "rb") as f:
        lines = f.read().split(b"\n")
    keep = [*lines[: line - 1], lines[line - 1][: len(lines[line - 1]) // 2]]
    with open(dst, "wb") as f:
        f.write(b"\n".join(keep))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
    p.add_argument("--out-dir", default=os.path.normpath(default_dir))
    args = p.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    demo = os.path.join(args.out_dir, "demo.rec")
    n = write(demo)
    cut(demo, os.path.join(args.out_dir, "damaged.rec"), DAMAGED_AT)
    print(f"wrote {demo} ({n} snapshots) and damaged.rec (cut at line {DAMAGED_AT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
