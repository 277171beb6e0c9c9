"""Flows datapath benchmark -> the `## flows` section of bench/RESULTS.md.

Needs root. Everything runs in two network namespaces joined by a veth link made
here (tests/netns.py), torn down at the end.

1. Per-packet cost of the TC program: kernel BPF stats (run_time_ns / run_cnt, raw),
   switched on with BPF_ENABLE_STATS for as long as this process holds the fd (other
   people's benchmarks toggling kernel.bpf_stats_enabled cannot switch ours off).
   Per scenario the shipped program and three references take turns on the same
   traffic, several rounds, medians: an empty program (the floor: stats bookkeeping
   and whatever the VM adds), the program without per-flow state (parse only), and
   the program keeping its counters in one array slot (one cache line; the least any
   exact per-flow counter touches). See REFERENCES in bench/flows_variants.py.
2. iperf3 throughput over the veth link, bare and with the flows program attached.
3. Whole-process CPU of a process running the flows collector at a 1 s refresh
   (the dashboard's flows source without its screen) at about 1k, 10k and 60k
   active UDP flows, and iftop (libpcap) watching the same traffic.

Usage: sudo .venv/bin/python bench/flows_bench.py [--quick]
       .venv/bin/python bench/flows_bench.py --render /tmp/ebpftop-flows-bench.json  (no measuring)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402
from results import machine, write_section  # noqa: E402

QUICK = "--quick" in sys.argv
RENDER = sys.argv[sys.argv.index("--render") + 1] if "--render" in sys.argv else None
SAVED = Path(tempfile.gettempdir()) / "ebpftop-flows-bench.json"  # the last run's figures, for --render
IPERF_SECONDS = 3 if QUICK else 8
IPERF_RUNS = 2 if QUICK else 5
CPU_WINDOW = 8 if QUICK else 20
WARMUP = 4
FLOW_COUNTS = (1000, 10000, 60000)
VARIANT_WINDOW = 2 if QUICK else 5
VARIANT_ROUNDS = 1 if QUICK else 3
# (traffic, flows): bulk TCP (iperf3, one flow each way); paced UDP, one 64-byte datagram
# per flow per second; UDP as fast as one sender goes, round-robin over the flows.
SCENARIOS = (("tcp", 1), ("udp", 1000), ("udp", 10000), ("udp", 60000), ("fast", 1000), ("fast", 10))
# where the alternatives to the shipped layout are measured (bench/flows_variants.py)
VARIANT_SCENARIOS = () if QUICK else (("tcp", 1), ("udp", 10000), ("fast", 10))

AGENT = r"""
import asyncio, json, sys, time
from ebpftop.collectors.flows.collector import FlowsCollector
async def main():
    c = FlowsCollector([sys.argv[1]], interval=1.0, max_flows=int(sys.argv[2]), tcp_events=True)
    await c.start()
    print(json.dumps({"ready": True, "prog_ids": c.dp.prog_ids()}), flush=True)
    while True:
        t = time.monotonic()
        d = await c.collect()
        print(json.dumps({"map_entries": d.map_entries, "evictions": d.evictions,
                          "update_failures": d.update_failures, "took": time.monotonic() - t}), flush=True)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
asyncio.run(main())
"""

# Compiles each variant ({name: [source path, cflags]}), then per round attaches each in
# turn, with the empty program behind it, on one direction of the interface.
VARIANTS = r"""
import json, os, sys, time
from bcc import BPF
from ebpftop.collectors.flows import loader, tcx
iface, direction = sys.argv[1], sys.argv[2]
window, rounds, spec = float(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
ingress = direction == "ingress"
progs = {}
for name, (path, cflags) in spec.items():
    b = BPF(src_file=path.encode(), cflags=["-I" + str(loader.HERE), "-Wno-unused-function"] + cflags)
    progs[name] = (b, b.load_func("ebpftop_fl_in" if ingress else "ebpftop_fl_eg", BPF.SCHED_CLS))
empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
floor = empty.load_func("ebpftop_empty", BPF.SCHED_CLS)
ifindex = loader.ifindex_of(iface)
names = list(progs)
print(json.dumps({"ready": True}), flush=True)
for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
        fn = progs[name][1]
        links = [tcx.attach(fn.fd, ifindex, ingress), tcx.attach(floor.fd, ifindex, ingress)]
        time.sleep(1.0)
        ids = [tcx.prog_id_of_fd(fn.fd), tcx.prog_id_of_fd(floor.fd)]
        print(json.dumps({"mark": name, "ids": ids, "load": os.getloadavg()[0]}), flush=True)
        time.sleep(window)
        print(json.dumps({"mark": name, "end": True}), flush=True)
        for link in reversed(links):
            tcx.detach(link)
"""

# Sends 64-byte datagrams round-robin to `count` ports as fast as one process can.
FAST_FLOODER = r"""
import socket, sys
dst, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"f" * 64
ports = range(1024, 1024 + count)
while True:
    for p in ports:
        try:
            s.sendto(payload, (dst, p))
        except OSError:
            pass
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


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run-time stats stay on while the fd is open,
    whatever anyone does to kernel.bpf_stats_enabled meanwhile."""
    from ebpftop.collectors.bpfsys import bpf

    return bpf(32, (0).to_bytes(4, "little"))


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
    out = net.a.run(
        "iperf3", "-c", net.b_ip4, "-p", "5201", "-t", str(IPERF_SECONDS), "-J", timeout=IPERF_SECONDS + 60
    )
    srv.communicate(timeout=30)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]


def start_agent(net, max_flows: int = 131072):  # the collector's default map size
    p = net.a.popen(PYTHON, "-c", AGENT, net.a_if, str(max_flows), bpf=True)
    hello = json.loads(p.stdout.readline() or "{}")
    if not hello.get("ready"):
        raise RuntimeError(f"flows agent failed: {p.stderr.read()[-2000:]}")
    return p, hello["prog_ids"]


def stop(p) -> str:
    p.terminate()
    try:
        out = p.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0]
    return out or ""


def per_packet(
    net,
    kind: str,
    flows: int,
    spec: dict,
    rounds: int = VARIANT_ROUNDS,
    window: float = VARIANT_WINDOW,
) -> dict:
    """Medians over rounds of raw ns/run for each program in `spec`, each with the empty
    program's figure measured behind it in the same window."""
    if kind == "tcp":
        srv = net.b.popen("iperf3", "-s", "-p", "5201", "-B", net.b_ip4)
        time.sleep(0.5)
        traffic = [srv, net.a.popen("iperf3", "-c", net.b_ip4, "-p", "5201", "-t", "3600")]
        direction = "egress"  # the data skbs (GSO) leave namespace A
    else:
        traffic = [net.b.python(FLOODER if kind == "udp" else FAST_FLOODER, net.a_ip4, str(flows))]
        direction = "ingress"
    agent = net.a.popen(
        PYTHON, "-c", VARIANTS, net.a_if, direction, str(window), str(rounds), json.dumps(spec), bpf=True
    )
    got: dict[str, list] = {n: [] for n in spec}
    loads = []
    try:
        hello = json.loads(agent.stdout.readline() or "{}")
        if not hello.get("ready"):
            raise RuntimeError(f"variants agent failed: {agent.stderr.read()[-2000:]}")
        # the window each program's figures are taken over: (ids, program stats, floor stats, clock)
        # as read at its start mark; an end mark without its start mark is an agent bug, reported
        # as such rather than measured against another program's baseline
        start: dict[str, tuple[list[int], tuple[int, int], tuple[int, int], float]] = {}
        for line in agent.stdout:
            mark = json.loads(line)
            if mark.get("end"):
                if mark["mark"] not in start:
                    raise RuntimeError(f"variants agent ended {mark['mark']!r} before starting it")
                ids, (ns0, n0), (f0, fn0), t0 = start.pop(mark["mark"])
                ns1, n1 = prog_stats(ids[:1])
                f1, fn1 = prog_stats(ids[1:])
                runs = n1 - n0
                got[mark["mark"]].append(
                    (
                        (ns1 - ns0) / max(1, runs),
                        (f1 - f0) / max(1, fn1 - fn0),
                        runs / (time.monotonic() - t0),
                    )
                )
            else:
                ids = mark["ids"]
                loads.append(mark["load"])
                start[mark["mark"]] = (ids, prog_stats(ids[:1]), prog_stats(ids[1:]), time.monotonic())
    finally:
        stop(agent)
        for p in reversed(traffic):
            stop(p)
    med = statistics.median
    out = {
        "kind": kind,
        "flows": flows,
        "direction": direction,
        "load": (min(loads), max(loads)) if loads else (0, 0),
    }
    for name, xs in got.items():
        if not xs:
            raise RuntimeError(f"no measurement of {name!r}")
        out[name] = {
            "ns": med(x[0] for x in xs),
            "floor": med(x[1] for x in xs),
            "over": med(x[0] - x[1] for x in xs),
            "rate": med(x[2] for x in xs),
            "spread": (min(x[0] for x in xs), max(x[0] for x in xs)),
        }
    return out


def scenario_name(kind: str, flows: int) -> str:
    if kind == "tcp":
        return "bulk TCP (iperf3), egress, one run per skb (GSO)"
    if kind == "udp":
        return f"{flows} UDP flows, 1 datagram/s each, ingress"
    return f"{flows} UDP flows, one sender flat out, ingress"


def main() -> int:
    if RENDER:  # the section again from a saved run's figures (after a change of wording)
        return render(json.loads(Path(RENDER).read_text()))
    if os.geteuid() != 0:
        print("flows_bench: needs root", file=sys.stderr)
        return 2
    stats_fd = enable_stats()
    rows: dict[str, object] = {}
    load_start = os.getloadavg()
    try:
        with veth_pair("ebtb") as net:
            # 1. per-packet cost: shipped program and references, interleaved
            import flows_variants

            with tempfile.TemporaryDirectory(prefix="ebpftop-references-") as tmp:
                # the shipped program as the loader builds it (default map size) and the two
                # references, made from it in bench/flows_variants.py
                refs = flows_variants.references(Path(tmp))
                variants = [per_packet(net, kind, n, refs) for kind, n in SCENARIOS]
            tried = []
            if VARIANT_SCENARIOS:
                with tempfile.TemporaryDirectory(prefix="ebpftop-variants-") as tmp:
                    spec = {n: flows_variants.variant_source(Path(tmp), n) for n in flows_variants.VARIANTS}
                    tried = [per_packet(net, kind, n, spec) for kind, n in VARIANT_SCENARIOS]

            # 2. iperf3: alternate bare / attached so drift hits both alike
            bare, attached = [], []
            for _ in range(IPERF_RUNS):
                bare.append(iperf(net))
                agent, ids = start_agent(net)
                attached.append(iperf(net))
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
                agent, ids = start_agent(net)
                time.sleep(WARMUP)
                ns0, n0 = prog_stats(ids)
                ours = cpu_percent(agent.pid, CPU_WINDOW)
                ns1, n1 = prog_stats(ids)
                out = stop(agent)
                ticks = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
                tracked = max((t["map_entries"] for t in ticks), default=None)
                iftop = net.a.popen(
                    "iftop",
                    "-t",
                    "-n",
                    "-N",
                    "-P",
                    "-B",
                    "-i",
                    net.a_if,
                    "-s",
                    str(CPU_WINDOW + WARMUP + 5),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(WARMUP)
                theirs = cpu_percent(iftop.pid, CPU_WINDOW)
                stop(iftop)
                flood.kill()
                flood.communicate()
                cpu.append((count, tracked, ours, theirs, (ns1 - ns0) / max(1, n1 - n0), n1 - n0))
    finally:
        os.close(stats_fd)
    figures = {
        "machine": machine(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "variants": variants,
        "tried": tried,
        "rows": rows,
        "cpu": cpu,
        "quick": QUICK,
        "rounds": VARIANT_ROUNDS,
        "window": VARIANT_WINDOW,
        "iperf": [IPERF_RUNS, IPERF_SECONDS],
    }
    SAVED.write_text(json.dumps(figures))
    return render(figures)


def render(f: dict) -> int:
    variants, tried, rows, cpu = f["variants"], f["tried"], f["rows"], f["cpu"]
    load_start, load_end = f["load_start"], f["load_end"]
    quick, (iperf_runs, iperf_seconds) = f["quick"], f["iperf"]
    ratio = 100.0 * rows["attached"] / rows["bare"]  # type: ignore[operator]
    best = 100.0 * rows["attached_best"] / rows["bare_best"]  # type: ignore[operator]
    lines = [
        f"Machine: {f['machine']}. "
        f"Run: `sudo .venv/bin/python bench/flows_bench.py{' --quick' if quick else ''}`.",
        f"Load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}"
        + (
            "; other people's tests and benchmarks ran alongside."
            if max(load_start[0], load_end[0]) > 1.5
            else "; a quiet machine."
        ),
        "",
        "Per-packet cost: kernel BPF stats, run_time_ns / run_cnt, raw. "
        "Each scenario: the shipped program and two references",
        f"take turns on the same traffic ({f['rounds']} rounds of {f['window']} s each, "
        "order rotated, medians); the empty program",
        "runs behind whichever is attached and gives that window's floor. Target: <= 100 ns per packet.",
        "",
        "| scenario | runs/s | shipped: raw ns (min-max) | empty program (floor) | shipped minus floor "
        "| parse only, minus floor | one array line, minus floor | <= 100 ns: raw / minus floor | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    yes = {True: "yes", False: "NO"}
    for v in variants:
        sh, po, ol = v["shipped"], v["parse only"], v["one array line"]
        lines.append(
            f"| {scenario_name(v['kind'], v['flows'])} | {sh['rate']:.0f} "
            f"| {sh['ns']:.0f} ({sh['spread'][0]:.0f}-{sh['spread'][1]:.0f}) | {sh['floor']:.0f} "
            f"| {sh['over']:.0f} | {po['over']:.0f} | {ol['over']:.0f} "
            f"| {yes[sh['ns'] <= 100]} / {yes[sh['over'] <= 100]} "
            f"| {v['load'][0]:.1f}-{v['load'][1]:.1f} |"
        )
    many = [v for v in variants if v["kind"] != "tcp" and v["flows"] >= 1000]
    hot = [v for v in variants if v["kind"] == "fast" and v["flows"] < 1000]
    if many:
        lo, hi = (
            min(v["one array line"]["over"] for v in many),
            max(v["one array line"]["over"] for v in many),
        )
        lines += [
            "",
            f"With many flows taking turns, one array line alone costs {lo:.0f}-{hi:.0f} ns "
            "above the floor here, the shipped program"
            f" {min(v['shipped']['over'] for v in many):.0f}-{max(v['shipped']['over'] for v in many):.0f}.",
        ]
    for v in hot:
        lines.append(
            f"With {v['flows']} hot flows the map (shipped minus parse only) costs "
            f"{v['shipped']['over'] - v['parse only']['over']:.0f} ns."
        )
    if tried:
        import flows_variants

        lines += [
            "",
            "Alternatives to the shipped layout "
            "(bench/flows_variants.py: each is flows.bpf.c with one change), same method;",
            "raw ns per run, and minus the floor in brackets:",
            "",
            "| variant | what it asks | "
            + " | ".join(scenario_name(t["kind"], t["flows"]) for t in tried)
            + " |",
            "|---|---|" + "---:|" * len(tried),
        ]
        for name, (*_, what) in flows_variants.VARIANTS.items():
            lines.append(
                f"| {name} | {what} | "
                + " | ".join(f"{t[name]['ns']:.0f} ({t[name]['over']:.0f})" for t in tried)
                + " |"
            )
        lines.append(
            "| (load average during these) | | "
            + " | ".join(f"{t['load'][0]:.1f}-{t['load'][1]:.1f}" for t in tried)
            + " |"
        )
    lines += [
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| iperf3 over veth, bare ({iperf_runs} x {iperf_seconds} s: median / best) "
        f"| {rows['bare'] / 1e9:.2f} / {rows['bare_best'] / 1e9:.2f} Gbit/s | |",
        f"| iperf3 over veth, flows attached (median / best) "
        f"| {rows['attached'] / 1e9:.2f} / {rows['attached_best'] / 1e9:.2f} Gbit/s "
        f"({ratio:.1f}% / {best:.1f}% of bare) | >= 97% of bare |",
    ]
    for count, tracked, ours, theirs, ns, runs in cpu:
        lines.append(
            f"| CPU of the flows collector process, ~{count} active flows (map held {tracked}; "
            f"TC program meanwhile {ns:.0f} ns/run raw over {runs} runs) "
            f"| {ours:.1f}% of one core | {'<= 5%' if count == 10000 else ''} |"
        )
        lines.append(
            f"| CPU of iftop -t on the same traffic | {theirs:.1f}% of one core | ebpftop below iftop |"
        )
    yes = {True: "met", False: "NOT met"}
    verdicts = [f"iperf3 >= 97% of bare (median): {yes[ratio >= 97.0]} ({ratio:.1f}%)."]
    verdicts += [
        f"ebpftop <= 5% of a core at ~{count} flows: {yes[ours <= 5.0]} ({ours:.1f}%)."
        for count, _, ours, *_ in cpu
        if count == 10000
    ]
    below = [(count, ours, theirs) for count, _, ours, theirs, *_ in cpu]
    verdicts.append(
        "ebpftop below iftop: "
        + "; ".join(
            f"~{count} flows {yes[ours < theirs]} ({ours:.1f}% vs {theirs:.1f}%)"
            for count, ours, theirs in below
        )
        + "."
    )
    lines += [
        "",
        "Verdicts from this run: " + " ".join(verdicts),
        "iftop's cost follows packets (libpcap copies each one to user space), "
        "ebpftop's follows flows: one batch",
        "read of the map a second (the kernel copies each entry), "
        "the whole-map work (deltas, totals, ranking) in C",
        "loops over columns (collectors/flows/table.py), "
        "Python code only for the top 500 it reports, and the tick on",
        "the event loop while it is short (a thread hop cost more than the tick). "
        "With one datagram per flow per",
        "second, 1000 flows are only 1000 packets a second for iftop, its cheapest case; "
        "with more flows the packets",
        "win: at 60000 flows iftop needs a whole core.",
    ]
    lines += NOTES
    write_section("flows", "\n".join(lines))
    print("\n".join(lines))
    return 0


NOTES = [
    "",
    "Reading the per-packet figures. The empty program's figure is the floor: the stats bookkeeping",
    "(two clock reads per run) and whatever the VM adds; it is not ours to cut. 'parse only' is the",
    "shipped program without per-flow state: reading the skb, its headers and the clock. "
    "'one array line' keeps",
    "the counters in one 64-byte slot of an array, at an address the verifier turns into a constant",
    "(no loads before the access): the least memory any exact per-flow counter has to touch. The",
    "shipped program's distance from it is what the LRU hash itself costs (bucket line, element",
    "lines, jhash over the 44-byte key, key compare, two atomic adds).",
    "Where the time goes: when many flows take turns (paced UDP; 1000 flows flat out), a flow's",
    "memory is cold by the time its next packet comes, whatever the layout: the one-line reference",
    "alone costs hundreds of ns (a cache miss plus a TLB miss under nested paging on a shared host;",
    "figures above). Instructions are a small part: with a few hot flows the whole lookup costs",
    "tens of ns. So the <= 100 ns target is not met on raw figures on this VM (the floor alone is",
    "60-80 ns); minus the floor only few, hot flows come near it (the verdict column). No exact",
    "per-flow layout can meet it for many flows taking turns here: one cold line already exceeds it.",
    "The variants table is the evidence for what was tried to cut the map's cost (see",
    "bench/flows_variants.py to rerun any one scenario): per-CPU values (no lock prefix, but one",
    "more pointer to follow), no common LRU, a dense IPv4 key in its own map, a non-preallocated",
    "hash, smaller and larger maps, and plain adds (unsafe across CPUs: only a bound on what the",
    "atomics cost). Differences up to ~80 ns between runs are noise on this shared VM: compare a",
    "variant with 'shipped' in the same column only, and look at the min-max spreads above. None",
    "beat 'shipped' consistently: in the earlier runs of flows_variants.py that led here (2026-11-22",
    "06:00-06:45 UTC, 3-5 rounds each, UDP 1k/10k paced, 10/1000 flows flat out, bulk TCP) the",
    "dense IPv4 key was between 7% better and 30% worse by scenario, per-CPU values equal or worse,",
    "no common LRU within noise. A smaller map acts through the TLB reach of the bucket array (16",
    "bytes per entry, vmalloc'd, 4 KiB pages): 64k entries were 6-15% cheaper than 128k with many",
    "flows taking turns, nothing with hot flows, and halve what the map holds; the default (131072)",
    "was kept. None of these layouts was kept: none moves the figures toward the target by",
    "more than the noise, and the one that might (a direct-mapped per-CPU cache in front of the",
    "hash) would still pay one cold line per packet with many flows (the one-line reference).",
    "Kept (2026-12-04): the clock. The program read bpf_ktime_get_coarse_ns, a helper call (~27 ns",
    "on this VM, with the retpoline and return-thunk mitigations); it now reads bpf_jiffies64, which",
    "the verifier inlines (collectors/kclock.py converts). With 10 hot flows 'parse only' went from",
    "40 to 13 ns over the floor and the shipped program from 147 to 136 ns raw (flows_variants.py,",
    "2 rounds, load 2.3; the rules program made the same change before).",
    "",
    "Other notes: the flows collector process is the dashboard's flows source alone (compile, attach,",
    "1 s map reads, rates, top-500, attribution, TCP events) without the Textual screen, with the",
    "default map size; `ebpftop` as a whole adds the UI (see the app section). Paced flows are one-way",
    "UDP datagrams to distinct destination ports; the closed ports make namespace A answer with ICMP",
    "port-unreachable (rate-limited by the kernel), a few hundred flows more. Stats are switched on",
    "with BPF_ENABLE_STATS (held by the bench), so other benchmarks toggling kernel.bpf_stats_enabled",
    "cannot switch them off mid-window. iperf3 on this shared VM varies by +-20% between runs, more",
    "than the 3% its target is about; bare and attached runs alternate so drift hits both alike.",
]


if __name__ == "__main__":
    sys.exit(main())
