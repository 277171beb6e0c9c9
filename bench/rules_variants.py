"""Variants of the rules TC program measured against each other (figures to stdout).

Each variant is collectors/rules/rules.bpf.c with one change made here by text
substitution (bench/variants.py: an anchor that is gone fails loudly). Every variant
is loaded as a real RuleBook in namespace A and given the same rule sets as bench/rules_bench.py; one variant at a time is attached with an
empty program behind it (the floor) while one sender in B sends UDP datagrams to A flat
out; rounds rotate the order. Figures: medians of run_time_ns / run_cnt, raw and above
the floor. Counters are neither folded nor zeroed here (a variant may change their layout).

Usage: sudo .venv/bin/python bench/rules_variants.py [rounds] [sets] [variant ...]
       sets: comma-separated of 1,64,256,2T,256T (T: all tables), default 1,256,2T
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402
from variants import variant_file  # noqa: E402

SRC = HERE.parent / "collectors" / "rules" / "rules.bpf.c"
COUNTER = "    struct counter *c = counters.lookup(&i);\n"
MATCH = "    u32 pos = lowest(&acc);\n    if (pos >= MAX_RULES) return TC_ACT_UNSPEC;\n"
SRC4 = "            and_vec(&acc, a4_lookup(&sv->src4, p->src4, &c->src4, fields & H_SRC4, fields & T_SRC4));\n"
DST4 = "            and_vec(&acc, a4_lookup(&sv->dst4, p->dst4, &c->dst4, fields & H_DST4, fields & T_DST4));\n"
DPORT = "            and_vec(&acc, port_lookup(&sv->dport, p->dport));\n"
INDEX = "    u32 i = bpf_get_smp_processor_id() * MAX_SLOTS + at; /* inlined: no call */\n"
RECORD = "    struct rule *r = &sv->rules[pos & (MAX_RULES - 1)];\n    u64 now"
PERCPU = ('BPF_TABLE_PINNED7("array", u32, struct counter, counters, NCPUS * MAX_SLOTS, "@PIN@/counters", BPF_F_MMAPABLE);',
          'BPF_TABLE_PINNED("percpu_array", u32, struct counter, counters, MAX_SLOTS, "@PIN@/counters");')

# name -> ([(anchor, replacement)], what it asks)
VARIANTS = {
    "shipped": ([], "the program as shipped"),
    "counter by slot": ([(INDEX, "    u32 i = bpf_get_smp_processor_id() * MAX_SLOTS + (r->slot & (MAX_SLOTS - 1)); (void)at;\n")],
                        "counters keyed by the rule record's slot (layout 3): their address waits for the record"),
    "per-CPU array": ([PERCPU, (INDEX, "    u32 i = at;\n")],
                      "counters in a percpu_array (layout 2): a pointer table first"),
    "no counter": ([(COUNTER, "    struct counter *c = 0; (void)i;\n")], "what the counter update costs"),
    "no rule record": ([(RECORD, "    struct rule rr = {pos, 0, 0}; struct rule *r = &rr;\n    u64 now")],
                       "what reading the matched rule's record (action, expiry) costs"),
    "stop at match": ([(MATCH, MATCH + "    if (pos != 999) return pos == 7 ? TC_ACT_SHOT : TC_ACT_UNSPEC;\n")],
                      "classification only: no rule record, expiry or counter"),
    "no src table": ([(SRC4, "")], "what the source address table costs"),
    "no dst table": ([(DST4, "")], "what the destination address table costs"),
    "no port table": ([(DPORT, "")], "what the destination port table costs"),
    "fixed multiplier": ([(SRC4, SRC4.replace("c->src4.lo", "0x9E3779B1")), (DST4, DST4.replace("c->dst4.lo", "0x9E3779B1"))],
                         "the host hash's multiplier as a constant: bucket address known before cfg is read"),
    "no expiry check": ([("    if (r->expires && r->expires <= now) {\n", "    if (0) {\n")], "what checking the match's TTL costs"),
    "parse only": ([("    p.dir = dir;\n", "    p.dir = dir;\n    if (p.sport != 999) return p.dport == 7 ? TC_ACT_SHOT : TC_ACT_UNSPEC;\n")],
                   "the packet parsed, nothing looked up"),
    "set found": ([("    if (!c->nrules) return TC_ACT_UNSPEC;\n", "    if (c->nrules != 9999) return p->dport == 7 ? TC_ACT_SHOT : TC_ACT_UNSPEC;\n")],
                  "parsed, active set and its cfg read"),
    "no tables": ([(SRC4, ""), (DST4, ""), (DPORT, "")], "no address or port table read"),
}

AGENT = r"""
import json, os, socket, sys, time
from pathlib import Path
from bcc import BPF
from ebpftop.collectors.flows import tcx
from ebpftop.collectors.rules import bpfsys, datapath
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
iface, window, rounds, srcs, files, tmp = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
datapath.Datapath.fold = lambda self, s, reset=frozenset(): None  # a variant may lay counters out differently
empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
floor = empty.load_func("ebpftop_empty", BPF.SCHED_CLS)
ifindex = socket.if_nametoindex(iface)
names = list(srcs)
print(json.dumps({"ready": True}), flush=True)
k = 0
for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
        datapath.SRC = Path(srcs[name])
        k += 1
        pin = f"/sys/fs/bpf/ebpftop-rv-{os.getpid()}-{k}"
        book = RuleBook(pin, f"{tmp}/state{k}", (iface,))
        try:
            for case, path in files.items():
                book.replace([x for _, x in parse_text(open(path).read())[0]], "bench")
                fd = bpfsys.obj_get(pin + "/prog_ebpftop_rl_in")
                link = tcx.attach(floor.fd, ifindex, True)
                time.sleep(0.5)
                print(json.dumps({"mark": [name, case], "ids": [tcx.prog_id_of_fd(fd), tcx.prog_id_of_fd(floor.fd)]}), flush=True)
                time.sleep(window)
                print(json.dumps({"mark": [name, case], "end": True}), flush=True)
                tcx.detach(link)
                os.close(fd)
        finally:
            book.dp.remove()
            book.state.remove()
            book.close()
"""

SETS = {"1": (1, False), "64": (64, False), "256": (256, False), "2T": (2, True), "256T": (256, True)}


def variant_source(tmp: Path, name: str) -> str:
    return str(variant_file(SRC, VARIANTS[name][0], tmp, name))


def main() -> int:
    from flows_bench import FAST_FLOODER, enable_stats, prog_stats, stop
    from rules_bench import rule_file

    if os.geteuid() != 0:
        print("rules_variants: needs root", file=sys.stderr)
        return 2
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    sets = sys.argv[2].split(",") if len(sys.argv) > 2 else ["1", "256", "2T"]
    names = sys.argv[3:] or list(VARIANTS)
    if any(n not in VARIANTS for n in names) or any(s not in SETS for s in sets):
        print(f"rules_variants: variants are {', '.join(VARIANTS)}; sets are {', '.join(SETS)}", file=sys.stderr)
        return 2
    stats_fd = enable_stats()
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-rules-variants-"))
    got: dict[tuple[str, str], list] = {(n, s): [] for n in names for s in sets}
    try:
        with veth_pair("ebrv") as net:
            srcs = {n: variant_source(tmp, n) for n in names}
            files = {s: str(rule_file(tmp, s, *SETS[s], net.a_ip4, net.b_ip4, ports="1000-1999")) for s in sets}
            sender = net.b.python(FAST_FLOODER, net.a_ip4, "1")  # to port 1024: inside every set's range
            agent = net.a.popen(PYTHON, "-c", AGENT, net.a_if, "2", str(rounds), json.dumps(srcs), json.dumps(files), str(tmp), bpf=True)
            try:
                if not json.loads(agent.stdout.readline() or "{}").get("ready"):
                    raise RuntimeError(f"variants agent failed: {agent.stderr.read()[-2000:]}")
                for line in agent.stdout:
                    m = json.loads(line)
                    key = tuple(m["mark"])
                    if m.get("end"):
                        ns1, n1 = prog_stats(ids[:1])
                        f1, fn1 = prog_stats(ids[1:])
                        got[key].append(((ns1 - ns0) / max(1, n1 - n0), (f1 - f0) / max(1, fn1 - fn0)))
                    else:
                        ids = m["ids"]
                        ns0, n0 = prog_stats(ids[:1])
                        f0, fn0 = prog_stats(ids[1:])
            finally:
                stop(agent)
                stop(sender)
    finally:
        os.close(stats_fd)
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    print(f"{rounds} rounds of 2 s, one UDP sender flat out; ns per packet, raw (above the floor); load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':16}" + "".join(f"{s:>16}" for s in sets) + "  what it asks")
    for n in names:
        cells = "".join(f"{med(x[0] for x in got[(n, s)]):8.1f} ({med(x[0] - x[1] for x in got[(n, s)]):5.1f})" for s in sets)
        print(f"{n:16}{cells}  {VARIANTS[n][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
