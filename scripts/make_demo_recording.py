#!/usr/bin/env python3
"""Regenerate tests/data/demo.rec (and damaged.rec): a small, realistic recording.

`demo.rec` is what the screenshots and the Pilot tests replay: 20 s of host samples at
1 Hz on a node whose CPU spikes from second 9 to 14 (with an incident marker at 11),
plus the other sources as they look on a node where ebpftop runs without root and
without Prometheus (BPF sources down with their hint, canary off). Data is synthetic
but deterministic (fixed seed, fixed clock), so regenerating gives the same bytes and
screenshots stay stable. It is written by the real Recorder, so the format is exactly
what `ebpftop --record` writes.

When a source gains a payload type, add a generator for it here so the demo shows it.

`damaged.rec` is demo.rec cut in the middle of line DAMAGED_AT, for tests of the
"replays up to the damage" message.

Usage: .venv/bin/python scripts/make_demo_recording.py [--out-dir tests/data]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

from ebpftop.collectors.model import Health, HealthState, HostData, Marker, NicRate, Snapshot
from ebpftop.collectors.record import Recorder

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: fixed, so ages and clocks are stable
SECONDS = 20
HOST = "demo-node-1"
GIB = 1024**3
DAMAGED_AT = 12  # line number cut in half in damaged.rec


def host_frames(rng: random.Random) -> list[Snapshot]:
    frames = []
    load = [0.42, 0.38, 0.31]
    mem_total = 16 * GIB
    for i in range(SECONDS):
        t = START + 0.05 + i
        spike = 9 <= i <= 14
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
            nics = tuple(sorted(
                (
                    NicRate("eth0", eth_rx, eth_tx, True),
                    NicRate("veth-canary", veth_rx, veth_tx, True),
                    NicRate("lo", lo, lo, True),
                    NicRate("docker0", 0.0, 0.0, False),
                ),
                key=lambda n: n.rx_bps + n.tx_bps,
                reverse=True,
            ))
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


def unavailable_frames() -> list[Snapshot]:
    """The other sources as a non-root node without Prometheus reports them."""
    t = START + 0.2
    no_root = ("needs root to load BPF programs", "run with sudo")
    return [
        Snapshot("flows", 1, t, Health(HealthState.DOWN, *no_root, None, 1)),
        Snapshot("rules", 1, t + 0.01, Health(HealthState.DOWN, *no_root, None, 1)),
        Snapshot(
            "canary", 1, t + 0.02,
            Health(HealthState.OFF, "no Prometheus configured", "set --prometheus-url or [canary] prometheus_url"),
        ),
        Snapshot("profiles", 1, t + 0.03, Health(HealthState.DOWN, *no_root, None, 1)),
    ]


def marker_frames() -> list[Snapshot]:
    t = START + 11.4
    data = Marker("p99 latency spike on checkout; CPU pegged", "oncall")
    return [Snapshot("marker", 1, t, Health(HealthState.OK, "", "", t, 0), data)]


def write(path: str) -> int:
    if os.path.exists(path):
        os.unlink(path)  # the Recorder appends; the demo must be exactly one session
    frames = sorted(host_frames(random.Random(42)) + unavailable_frames() + marker_frames(), key=lambda s: s.time)
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
    keep = lines[: line - 1] + [lines[line - 1][: len(lines[line - 1]) // 2]]
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
