"""Variants of the rules TC program measured against each other (figures to stdout).

Each variant is collectors/rules/rules.bpf.c with one change made here by text
substitution (bench/variants.py: an anchor that is gone fails loudly). Every round loads
every variant afresh as a real RuleBook in namespace A (new maps and code, so the median
spans several placements in memory) and gives them the same rule sets as
bench/rules_bench.py. For each set, all variants run on the same packets: they are
attached together in one tcx chain on A's ingress, an empty program last (the floor),
in an order that rotates every round, while one sender in B sends UDP datagrams to A
flat out. Figures, medians over rounds: each variant's ns per packet when it ran first
(right after the network stack, as a lone program would), above the floor; and its
difference from the first variant named, paired within each round (the finer figure:
the same packets, the same moment). Counters are neither folded nor zeroed here (a
variant may change their layout).

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
from variants import ChainFigures, variant_file  # noqa: E402

SRC = HERE.parent / "collectors" / "rules" / "rules.bpf.c"
COUNTER = "    struct counter *c = counters.lookup(&i);\n"
MATCH = "    u32 pos = lowest(sv, &acc);\n    if (pos >= MAX_RULES) return TC_ACT_UNSPEC;\n"
SRC4 = "            and_vec(&acc, a4_hosts(&sv->src4, p->src4, &c->src4));\n"
DST4 = "            and_vec(&acc, a4_hosts(&sv->dst4, p->dst4, &c->dst4));\n"
DPORT = "                and_vec(&acc, pint_lookup(&sv->dpi, p->dport));\n"
CTZ = "    return base + sv->ctz[((w & -w) * DEBRUIJN) >> 58];\n"
HALVING = """    u32 n = 0;
    if (!(w & 0xffffffffULL)) { n += 32; w >>= 32; }
    if (!(w & 0xffff)) { n += 16; w >>= 16; }
    if (!(w & 0xff)) { n += 8; w >>= 8; }
    if (!(w & 0xf)) { n += 4; w >>= 4; }
    if (!(w & 0x3)) { n += 2; w >>= 2; }
    if (!(w & 0x1)) n += 1;
    return base + n;
"""
PTREE = "    u32 k = port > t->hi[15] ? PK8(16) : PK8(0);\n"
PLOOP = """    u32 k = 0;
#pragma unroll
    for (u32 step = PINT / 2; step; step >>= 1)
        if (t->hi[(k + step - 1) & (PINT - 1)] < port) k += step;
"""
INDEX = "    u32 i = bpf_get_smp_processor_id() * MAX_SLOTS + at; /* inlined: no call */\n"
RECORD = "    struct rule *r = &sv->rules[pos & (MAX_RULES - 1)];\n    u64 now"
PERCPU = (
    'BPF_TABLE_PINNED7("array", u32, struct counter, counters, NCPUS * MAX_SLOTS, "@PIN@/counters", '
    "BPF_F_MMAPABLE);",
    'BPF_TABLE_PINNED("percpu_array", u32, struct counter, counters, MAX_SLOTS, "@PIN@/counters");',
)

# name -> ([(anchor, replacement)], what it asks)
VARIANTS = {
    "shipped": ([], "the program as shipped"),
    "counter by slot": (
        [
            (
                INDEX,
                "    u32 i = bpf_get_smp_processor_id() * MAX_SLOTS + (r->slot & (MAX_SLOTS - 1)); "
                "(void)at;\n",
            )
        ],
        "counters keyed by the rule record's slot (layout 3): their address waits for the record",
    ),
    "per-CPU array": (
        [PERCPU, (INDEX, "    u32 i = at;\n")],
        "counters in a percpu_array (layout 2): a pointer table first",
    ),
    "no counter": ([(COUNTER, "    struct counter *c = 0; (void)i;\n")], "what the counter update costs"),
    "no rule record": (
        [(RECORD, "    struct rule rr = {pos, 0, 0}; struct rule *r = &rr;\n    u64 now")],
        "what reading the matched rule's record (action, expiry) costs",
    ),
    "stop at match": (
        [(MATCH, MATCH + "    if (pos != 999) return pos == 7 ? TC_ACT_SHOT : TC_ACT_UNSPEC;\n")],
        "classification only: no rule record, expiry or counter",
    ),
    "no src table": (
        [(SRC4, "")],
        "what the source host hash costs (with many rules, the match moves to an earlier rule)",
    ),
    "no dst table": ([(DST4, "")], "what the destination host hash costs"),
    "no port table": ([(DPORT, "")], "what the destination port intervals cost"),
    "port table": (
        [(DPORT, DPORT.replace("pint_lookup(&sv->dpi", "port_lookup(&sv->dport"))],
        "ports through the 65536-entry table (layout 4): the class's address waits for root's line",
    ),
    "port search loop": ([(PTREE, PLOOP)], "the interval search as a loop: computed indexes"),
    "halving ctz": (
        [(CTZ, HALVING)],
        "the match's bit found in six halving steps (layout 4), not by de Bruijn",
    ),
    "no expiry check": (
        [("    if (r->expires && r->expires <= now) {\n", "    if (0) {\n")],
        "what checking the match's TTL costs",
    ),
    "parse only": (
        [
            (
                "    p.dir = dir;\n",
                "    p.dir = dir;\n    if (p.sport != 999) return p.dport == 7 ? TC_ACT_SHOT : "
                "TC_ACT_UNSPEC;\n",
            )
        ],
        "the packet parsed, nothing looked up",
    ),
    "set found": (
        [
            (
                "    if (!c->nrules) return TC_ACT_UNSPEC;\n",
                "    if (c->nrules != 9999) return p->dport == 7 ? TC_ACT_SHOT : TC_ACT_UNSPEC;\n",
            )
        ],
        "parsed, active set and its cfg read",
    ),
    "no tables": ([(SRC4, ""), (DST4, ""), (DPORT, "")], "no address or port table read (the match moves)"),
}

AGENT = r"""
import itertools, json, os, socket, sys, time
from pathlib import Path
from bcc import BPF
from ebpftop.collectors.flows import tcx
from ebpftop.collectors.rules import bpfsys, datapath
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
iface, window, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
srcs, files, tmp = json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
# a variant may lay counters out differently
datapath.Datapath.fold = lambda self, s, reset=frozenset(): None
empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
floor = empty.load_func("ebpftop_empty", BPF.SCHED_CLS)
ifindex = socket.if_nametoindex(iface)
names = list(srcs)
orders = list(itertools.permutations(names))
print(json.dumps({"ready": True}), flush=True)
for r in range(rounds):
    books = {}
    try:
        for name in names:
            datapath.SRC = Path(srcs[name])
            pin = f"/sys/fs/bpf/ebpftop-rv-{os.getpid()}-{r}-{len(books)}"
            books[name] = RuleBook(pin, f"{tmp}/state-{r}-{len(books)}", (iface,))
        for case, path in files.items():
            ids = {}
            for name, book in books.items():
                book.replace([x for _, x in parse_text(open(path).read())[0]], "bench")
                for lp in book.dp.links():  # attached below, in this round's order
                    tcx.detach(bpfsys.obj_get(lp.path))
                    os.unlink(lp.path)
                fd = bpfsys.obj_get(book.dp.path("prog_ebpftop_rl_in"))
                ids[name] = (fd, tcx.prog_id_of_fd(fd))
            order = list(orders[r % len(orders)])
            links = [tcx.attach(ids[n][0], ifindex, True) for n in order]
            links.append(tcx.attach(floor.fd, ifindex, True))
            time.sleep(0.3)
            prog_ids = {n: i for n, (_, i) in ids.items()} | {"floor": tcx.prog_id_of_fd(floor.fd)}
            print(json.dumps({"case": case, "order": order, "ids": prog_ids}), flush=True)
            time.sleep(window)
            print(json.dumps({"case": case, "end": True}), flush=True)
            for link in links:
                tcx.detach(link)
            for fd, _ in ids.values():
                os.close(fd)
    finally:
        for book in books.values():
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
        print(
            f"rules_variants: variants are {', '.join(VARIANTS)}; sets are {', '.join(SETS)}", file=sys.stderr
        )
        return 2
    stats_fd = enable_stats()
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-rules-variants-"))
    figures = ChainFigures(names[0], prog_stats)
    try:
        with veth_pair("ebrv") as net:
            srcs = {n: variant_source(tmp, n) for n in names}
            files = {
                s: str(rule_file(tmp, s, *SETS[s], net.a_ip4, net.b_ip4, ports="1000-1999")) for s in sets
            }
            sender = net.b.python(FAST_FLOODER, net.a_ip4, "1")  # to port 1024: inside every set's range
            agent = net.a.popen(
                PYTHON,
                "-c",
                AGENT,
                net.a_if,
                "1.5",
                str(rounds),
                json.dumps(srcs),
                json.dumps(files),
                str(tmp),
                bpf=True,
            )
            try:
                if not json.loads(agent.stdout.readline() or "{}").get("ready"):
                    raise RuntimeError(f"variants agent failed: {agent.stderr.read()[-2000:]}")
                for line in agent.stdout:
                    m = json.loads(line)
                    if not m.get("end"):
                        figures.start(m["ids"])
                        lead = m["order"][0]
                    else:
                        figures.end(lead, m["case"])
                if agent.wait() != 0:
                    raise RuntimeError(f"variants agent failed: {agent.stderr.read()[-2000:]}")
            finally:
                stop(agent)
                stop(sender)
    finally:
        os.close(stats_fd)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(xs: list[float] | None) -> str:
        return f"{statistics.median(xs):6.1f}" if xs else "     -"

    print(
        f"{rounds} rounds, every variant loaded afresh each round; all in one tcx chain (order rotating, "
        "the floor "
        f"last), one UDP sender flat out, 1.5 s a set; load {os.getloadavg()[0]:.2f}"
    )
    print(f"ns per packet above the floor when first in the chain | paired difference from {names[0]!r}")
    print(f"{'variant':18}" + "".join(f"{s:>20}" for s in sets) + "  what it asks")
    for n in names:
        cells = "".join(
            f"{med(figures.first.get((n, s)))} | {med(figures.paired.get((n, s)))}{'':3}" for s in sets
        )
        print(f"{n:18}{cells}  {VARIANTS[n][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
