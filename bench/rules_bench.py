"""Rules datapath benchmark -> the `## rules` section of bench/RESULTS.md.

Needs root. Two network namespaces joined by a veth link made here (tests/netns.py),
a bpffs pin directory of its own; everything is removed at the end.

Per-packet cost of the rules TC program on A's ingress with 1, 64 and 256 rules, from
the kernel's BPF stats (run_time_ns / run_cnt with kernel.bpf_stats_enabled=1, restored
after), while B sends UDP datagrams to A. The rule sets: all rules are udp with a TTL
(so the matched rule's expiry is checked), the last rule matches the traffic and the
others differ only in source address, so the protocol vector holds every rule and the
source lookup narrows it; then destination, port, TTL and the counter update. With one
rule every field has a single value and is compared inline; with 64 and 256 the source
goes through the IPv4 table while destination and port (one value each) are compared
inline. The "all tables" sets (2 and 256 rules) give the other rules a second
destination and port range, so source, destination and port all go through their
tables: the longest IPv4 path, the same for both sizes. An empty TC program on the same
hook is measured alongside as the floor (the cost of running any program at all).

Usage: sudo .venv/bin/python bench/rules_bench.py [--quick]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402
from results import machine, write_section  # noqa: E402

QUICK = "--quick" in sys.argv
PACKETS = 50_000 if QUICK else 200_000
ROUNDS = 3 if QUICK else 5
CASES = (
    ("1", 1, False),
    ("64", 64, False),
    ("256", 256, False),
    ("2 all tables", 2, True),
    ("256 all tables", 256, True),
)

SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b'x' * 64, (sys.argv[1], int(sys.argv[2])))
"""

# Runs inside A's network namespace (nsenter --net): loads a rule set and, the first
# time, an empty program on the same hook as the floor; stays up holding the floor.
AGENT = r"""
import json, socket, sys
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
from ebpftop.collectors.flows import tcx
from ebpftop.collectors.rules import bpfsys
pin, state, iface = sys.argv[1:4]
book = RuleBook(pin, state, (iface,))
from bcc import BPF
empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
fn = empty.load_func("ebpftop_empty", BPF.SCHED_CLS)
link = tcx.attach(fn.fd, socket.if_nametoindex(iface), True)
print(json.dumps({"floor": tcx.prog_id_of_fd(fn.fd)}), flush=True)
for line in sys.stdin:
    rules = [r for _, r in parse_text(open(line.strip()).read())[0]]
    book.replace(rules, "bench")
    fd = bpfsys.obj_get(pin + "/prog_ebpftop_rl_in")
    print(json.dumps({"prog": tcx.prog_id_of_fd(fd), "rules": len(book.read().rules)}), flush=True)
"""


def prog_stats(prog_id: int) -> tuple[int, int]:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show", "id", str(prog_id)], capture_output=True, text=True
    )
    info = json.loads(out.stdout or "{}")
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


def rule_file(
    tmp: Path, name: str, n: int, tables: bool, a_ip: str, b_ip: str, ports: str = "5000-5999"
) -> Path:
    def other(i: int) -> tuple[str, str]:
        return ("192.0.2.7", "7000-7999") if tables and i % 2 == 0 else (a_ip, ports)

    lines = [
        f"count udp from 198.51.{i // 250}.{i % 250 + 1} to {other(i)[0]} port {other(i)[1]} ttl 1h"
        for i in range(n - 1)
    ]
    lines.append(f"count udp from {b_ip} to {a_ip} port {ports} ttl 1h")
    path = tmp / f"{name.replace(' ', '-')}.rules"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    if os.geteuid() != 0:
        print("rules_bench: needs root", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-rules-bench-"))
    pin_root = f"/sys/fs/bpf/ebpftop-bench-{secrets.token_hex(4)}"
    pin = f"{pin_root}/rules"
    stats_before = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    results: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    floors: list[float] = []
    load_before = os.getloadavg()
    try:
        with veth_pair("ebrb") as net:
            agent = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{net.a.name}",
                    PYTHON,
                    "-c",
                    AGENT,
                    pin,
                    str(tmp / "state"),
                    net.a_if,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                floor = json.loads(agent.stdout.readline())["floor"]
                files = {
                    name: rule_file(tmp, name, n, tables, net.a_ip4, net.b_ip4) for name, n, tables in CASES
                }
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
                for _ in range(ROUNDS):
                    for name, n, _ in CASES:  # interleaved so drift hits every set alike
                        agent.stdin.write(f"{files[name]}\n")
                        agent.stdin.flush()
                        info = json.loads(agent.stdout.readline())
                        assert info["rules"] == n, info
                        ns0, c0 = prog_stats(info["prog"])
                        f0, fc0 = prog_stats(floor)
                        net.b.run(PYTHON, "-c", SEND, net.a_ip4, "5201", str(PACKETS), timeout=300)
                        ns1, c1 = prog_stats(info["prog"])
                        f1, fc1 = prog_stats(floor)
                        results[name].append((ns1 - ns0) / max(1, c1 - c0))
                        floors.append((f1 - f0) / max(1, fc1 - fc0))
            finally:
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text(stats_before)
                agent.kill()
                agent.wait()
                from ebpftop.collectors.rules.ruleset import RuleBook

                book = RuleBook(pin, str(tmp / "state"))
                book.dp.remove()
                book.state.remove()
    finally:
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()
    med = {n: statistics.median(v) for n, v in results.items()}
    floor_ns = statistics.median(floors)
    ratio = med["256"] / med["1"]
    ratio_tables = med["256 all tables"] / med["2 all tables"]
    ratio_all = med["256 all tables"] / med["1"]
    rows = "\n".join(
        f"| {n} | {med[n]:.1f} | {min(results[n]):.1f} - {max(results[n]):.1f} | {med[n] - floor_ns:.1f} |"
        for n, _, _ in CASES
    )
    busy = max(load_before[0], load_after[0]) > 1.5
    where = "2 CPUs shared with other benchmarks and tests" if busy else "a quiet machine"
    over = [f"{n} {med[n]:.1f}" for n, _, _ in CASES if med[n] > 100]
    under = [n for n, _, _ in CASES if med[n] <= 100]
    standing = (
        f"Over 100 ns in this run: {', '.join(over)} ns"
        + (f"; at or under it: {', '.join(under)}." if under else ".")
        if over
        else "Every set at or under 100 ns in this run."
    )
    body = f"""Machine: {machine()}; load average {load_before[0]:.2f} before, \
{load_after[0]:.2f} after ({where}). {PACKETS} UDP datagrams (64-byte payload) from B to A per measurement,
{ROUNDS} rounds with the rule sets interleaved; medians. Per-packet cost = run_time_ns / run_cnt of the rules
program on A's ingress (kernel.bpf_stats_enabled=1; the stats themselves add two clock reads per run).
All rules are udp with a TTL; the last one matches the traffic, the others differ in source address.
1 rule: every field has one value, compared inline. 64 and 256: the source goes through the IPv4 table,
destination and port (one value each in those sets) are compared inline. 2 and 256 all tables: the other
rules alternate between two destinations and two port ranges, so source, destination and port all go
through their tables (the longest IPv4 path). Every packet then checks the matched rule's expiry and
updates its per-CPU counter.

| rules | ns per packet (median) | range | above an empty program |
|---|---|---|---|
{rows}

Empty TC program on the same hook (floor): {floor_ns:.1f} ns per packet.
256 rules / 1 rule (the sets above) = {ratio:.2f} (target <= 1.2: {"met" if ratio <= 1.2 else "NOT met"}).
Same path, 128 times the rules: 256 all tables / 2 all tables = {ratio_tables:.2f}. \
Across paths: 256 all tables /
1 rule = {ratio_all:.2f} - one rule has every field single-valued, so it is compared inline: a shorter path
than any set whose fields need their tables, whatever their number of rules.
Worst median {max(med.values()):.1f} ns (target <= 100 ns: \
{"met" if max(med.values()) <= 100 else "NOT met"}).

Where the time goes. On this VM every function call a BPF program makes costs 30-40 ns (retpolines and
the return thunks of the SRSO mitigation): measured on the same hook, a hash map lookup adds ~45 ns, an
LPM trie lookup ~40, bpf_ktime_get_coarse_ns ~37, while an inlined array lookup adds ~6. The datapath
makes no call on the IPv4 path: array tables, jiffies via the inlined bpf_jiffies64, the CPU number
inlined, the expiry search only when the first match has expired. Everything the IPv4 path reads sits in
one map value per set at fixed offsets (one map lookup for the set), and counters are indexed
[cpu][set][position], so their address is known as soon as the match is (collectors/rules/README.md).
Layout 5 (2026-12-04 evening) cut the instructions a packet runs from 268 / 306 / 322 / 371 / 381 to 231 /
258 / 269 / 316 / 327 for the sets 1 / 64 / 256 / 2 all tables / 256 all tables (bench/rules_insns.py
replays the verified program on the benchmark's packet): host addresses in a cuckoo hash
whose slot holds key and vector on one line (two probes at most; was 8-slot buckets, key line then vector
line); port fields of at most 32 intervals searched in place beside the set's flags (was a 128 KB table
of classes, then the class's vector); one masked compare picks each field's path; the match's bit by a de
Bruijn multiply (was six halving steps). Layout 4 against layout 5 on the same packets (bench/rules_ab.py: \
both checkouts in one tcx chain, order
alternating, 12 rounds a run, each run a fresh load, so a fresh placement in memory), paired differences:
256 all tables -2.9 to -9.8 ns a packet over eight runs (median -7.6), 2 all tables -2.3 to -12.5 over six
(median -7.0). Taken one by one
(bench/rules_variants.py, 16 rounds, every variant reloaded each round), the de Bruijn step and the
written-out interval search measure within noise of the six halving steps and a search loop (-0.2 to
-1.3 ns): no single part accounts for the gain. Tried and dropped earlier (older layouts): a
kmalloc'd (<= 32 KiB) or non-mappable counter array (no change: the miss is a cache miss, not a TLB one),
a fixed host-hash multiplier (no change, twice), one classifier for both sets (~3 ns, within noise),
warming the matched counter and rule lines early (no change), aligning map values to cache lines, a 2 MB
direct port table (0-4 ns, within noise, for 4 MB more per field), and vectors kept as pointers and ANDed
word by word at the end (the verifier gives up: every combination of pointer origins is a separate
state). In BPF_PROG_TEST_RUN, where every line stays in L1, the same program costs 14 ns above its
floor for 1 rule and 17 for 256 all tables, about half of the figures above: between two packets the
network stack evicts L1. The tables are preallocated: 2.6 MB of
kernel memory for both sets while the program is loaded. {standing} The floor alone is ~60 ns of the
100. Figures move by +-5 ns between runs with the machine's other load, and more while the host is
busy: of the runs of this code on 2026-12-04 evening, one had every figure, the floor and the one-rule set
included, 10-20 ns higher than the others.

Reproduce: `sudo .venv/bin/python bench/rules_bench.py` (`--quick` for fewer packets and rounds).
"""
    write_section("rules", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
