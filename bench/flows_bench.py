"""Flows datapath benchmark -> the `## flows` section of bench/RESULTS.md.

Needs root. Everything runs in two network namespaces joined by a veth link made
here (tests/netns.py), torn down at the end.

1. Per-packet cost of the TC program: kernel BPF stats (run_time_ns / run_cnt,
   kernel.bpf_stats_enabled switched on for the measurement and restored after).
2. iperf3 throughput over the veth link, bare and with the flows program attached.
3. Whole-process CPU of a process running the flows collector at a 1 s refresh
   (the dashboard's flows source without its screen) at about 1k, 10k and 60k
   active UDP flows, and iftop (libpcap) watching the same traffic.

Usage: sudo .venv/bin/python bench/flows_bench.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402
from results import machine, write_section  # noqa: E402

QUICK = "--quick" in sys.argv
IPERF_SECONDS = 3 if QUICK else 8
IPERF_RUNS = 2 if QUICK else 5
CPU_WINDOW = 8 if QUICK else 20
WARMUP = 4
FLOW_COUNTS = (1000, 10000, 60000)

AGENT = r"""
import asyncio, json, sys, time
from ebpftop.collectors.flows.collector import FlowsCollector
async def main():
    c = FlowsCollector([sys.argv[1]], interval=1.0, max_flows=int(sys.argv[2]), tcp_events=True)
    await c.start()
    # the floor: an empty TC program on the same hook, measured alongside ours
    from bcc import BPF
    from ebpftop.collectors.flows import tcx
    empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
    fn = empty.load_func("ebpftop_empty", BPF.SCHED_CLS)
    link = tcx.attach(fn.fd, c.dp.attachments[sys.argv[1]].ifindex, True)
    print(json.dumps({"ready": True, "prog_ids": c.dp.prog_ids(), "floor_id": tcx.prog_id_of_fd(fn.fd)}), flush=True)
    while True:
        t = time.monotonic()
        d = await c.collect()
        print(json.dumps({"flows_tracked": d.flows_tracked, "evictions": d.evictions,
                          "update_failures": d.update_failures, "took": time.monotonic() - t}), flush=True)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
asyncio.run(main())
"""

# Keeps `count` UDP flows active: one datagram per flow per second, to distinct
# destination ports (dport is part of the 5-tuple), paced in 20 slices a second.
FLOODER = r"""
import socket, sys, time
dst, count = sys.argv[1], int(sys.argv[2])
ports = [1024 + i for i in range(count)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"f" * 64
slices = 20
per = (count + slices - 1) // slices
start = time.monotonic(); n = 0
while True:
    for k in range(slices):
        for p in ports[k * per:(k + 1) * per]:
            try:
                s.sendto(payload, (dst, p))
            except OSError:
                pass
        n += 1
        delay = start + n / slices - time.monotonic()
        if delay > 0:
            time.sleep(delay)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def cpu_percent(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def prog_stats(ids: list[int]) -> tuple[int, int]:
    run_ns = run_cnt = 0
    for i in ids:
        out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)], capture_output=True, text=True)
        info = json.loads(out.stdout or "{}")
        run_ns += int(info.get("run_time_ns", 0))
        run_cnt += int(info.get("run_cnt", 0))
    return run_ns, run_cnt


def iperf(net) -> float:
    srv = net.b.popen("iperf3", "-s", "-1", "-p", "5201", "-B", net.b_ip4)
    time.sleep(0.5)
    out = net.a.run("iperf3", "-c", net.b_ip4, "-p", "5201", "-t", str(IPERF_SECONDS), "-J", timeout=IPERF_SECONDS + 60)
    srv.communicate(timeout=30)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]


def start_agent(net, max_flows: int = 262144):
    p = net.a.popen(PYTHON, "-c", AGENT, net.a_if, str(max_flows), bpf=True)
    hello = json.loads(p.stdout.readline())
    return p, hello["prog_ids"], hello["floor_id"]


def stop(p) -> str:
    p.terminate()
    try:
        out = p.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0]
    return out or ""


def main() -> int:
    if os.geteuid() != 0:
        print("flows_bench: needs root", file=sys.stderr)
        return 2
    stats_before = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    rows: dict[str, object] = {}
    with veth_pair("ebtb") as net:
        # 2. iperf3: alternate bare / attached so drift hits both alike
        bare, attached = [], []
        agent, ids, floor = start_agent(net)
        stop(agent)
        for _ in range(IPERF_RUNS):
            bare.append(iperf(net))
            agent, ids, floor = start_agent(net)
            attached.append(iperf(net))
            # 1. per-packet cost under bulk TCP (one run per skb; GSO skbs are large)
            if "tcp_ns" not in rows:
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
                try:
                    ns0, n0 = prog_stats(ids)
                    f0, fn0 = prog_stats([floor])
                    iperf(net)
                    ns1, n1 = prog_stats(ids)
                    f1, fn1 = prog_stats([floor])
                finally:
                    Path("/proc/sys/kernel/bpf_stats_enabled").write_text(stats_before)
                rows["tcp_ns"] = (ns1 - ns0) / max(1, n1 - n0)
                rows["tcp_runs"] = n1 - n0
                rows["tcp_floor"] = (f1 - f0) / max(1, fn1 - fn0)
            stop(agent)
        rows["bare"] = statistics.median(bare)
        rows["attached"] = statistics.median(attached)
        # best-of is the steadier capacity estimate when other load comes and goes
        rows["bare_best"] = max(bare)
        rows["attached_best"] = max(attached)

        # 3. CPU at N active flows, ebpftop then iftop on the same traffic
        cpu = []
        for count in FLOW_COUNTS:
            flood = net.b.python(FLOODER, net.a_ip4, str(count))
            agent, ids, floor = start_agent(net)
            time.sleep(WARMUP)
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
            try:
                ns0, n0 = prog_stats(ids)
                f0, fn0 = prog_stats([floor])
                ours = cpu_percent(agent.pid, CPU_WINDOW)
                ns1, n1 = prog_stats(ids)
                f1, fn1 = prog_stats([floor])
            finally:
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text(stats_before)
            out = stop(agent)
            ticks = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            tracked = max((t["flows_tracked"] for t in ticks), default=None)
            iftop = net.a.popen("iftop", "-t", "-n", "-N", "-P", "-B", "-i", net.a_if, "-s", str(CPU_WINDOW + WARMUP + 5),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(WARMUP)
            theirs = cpu_percent(iftop.pid, CPU_WINDOW)
            stop(iftop)
            flood.kill()
            flood.communicate()
            cpu.append((count, tracked, ours, theirs, (ns1 - ns0) / max(1, n1 - n0), n1 - n0, (f1 - f0) / max(1, fn1 - fn0)))

    ratio = 100.0 * rows["attached"] / rows["bare"]  # type: ignore[operator]
    lines = [
        f"Machine: {machine()}. Run: `sudo .venv/bin/python bench/flows_bench.py{' --quick' if QUICK else ''}`.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| TC program, bulk TCP (iperf3): ns per run (one run per skb; GSO skbs) | {rows['tcp_ns']:.0f} ns over {rows['tcp_runs']} runs; empty program on the same hook: {rows['tcp_floor']:.0f} ns | <= 100 ns/packet |",
    ]
    for count, tracked, ours, theirs, ns, runs, fl in cpu:
        lines.append(f"| TC program, {count} UDP flows of 64-byte datagrams: ns per packet | {ns:.0f} ns over {runs} runs; empty program: {fl:.0f} ns | <= 100 ns/packet |")
    best = 100.0 * rows["attached_best"] / rows["bare_best"]  # type: ignore[operator]
    lines.append(f"| iperf3 over veth, bare ({IPERF_RUNS} x {IPERF_SECONDS} s: median / best) | {rows['bare'] / 1e9:.2f} / {rows['bare_best'] / 1e9:.2f} Gbit/s | |")
    lines.append(f"| iperf3 over veth, flows attached (median / best) | {rows['attached'] / 1e9:.2f} / {rows['attached_best'] / 1e9:.2f} Gbit/s ({ratio:.1f}% / {best:.1f}% of bare) | >= 97% of bare |")
    for count, tracked, ours, theirs, ns, runs, fl in cpu:
        target = " (<= 5%)" if count == 10000 else ""
        lines.append(f"| CPU of the flows collector process, ~{count} active flows (map held {tracked}) | {ours:.1f}% of one core | {target.strip(' ()') or ''} |")
        lines.append(f"| CPU of iftop -t on the same traffic | {theirs:.1f}% of one core | ebpftop below iftop |")
    lines += [
        "",
        "Notes: the flows collector process here is the dashboard's flows source alone (compile, attach,",
        "1 s map reads, rates, top-500, attribution, TCP events) without the Textual screen; `ebpftop`",
        "as a whole adds the UI (see the app section). Flows are one-way UDP datagrams to distinct",
        "destination ports, one per flow per second; the closed ports make namespace A answer with",
        "ICMP port-unreachable (rate-limited by the kernel), which adds a few hundred flows.",
        "BPF stats (run_time_ns) include the stats bookkeeping itself (two clock reads per run) and",
        "any time the vCPU is descheduled by the host; the empty program's figure on the same hook",
        "and traffic is that floor, so ours minus it is the program's own cost.",
        "Where the time goes (same program, variants on the same veth and traffic): header parsing",
        "~40 ns over the floor; the LRU hash lookup + two atomic adds ~300-450 ns when 1000 flows",
        "take turns at 20k packets/s (~300 ns even in a 2k-entry map, ~90 ns for one hot flow on",
        "lo). The cost is cache and TLB misses on the map between packets, not instructions; a",
        "128k-entry map (the default) costs ~15% more than a 2k one. The <= 100 ns target holds",
        "for bulk TCP (GSO skbs) here, not for many small-packet flows on this VM.",
        "The VM is shared: other benchmarks and tests ran at the same time (load average 5-7 on",
        "2 CPUs). iperf3 then varies by +-20% between runs, far more than the 3% the target is",
        "about, so this machine cannot confirm or refute >= 97% (four full runs gave medians of",
        "91%, 114%, 136% and 83% of bare). Bare and attached runs alternate so drift hits both alike.",
        "For the same reason the 60k-flow sender may fall short of 60k packets/s (see the run count).",
    ]
    write_section("flows", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
