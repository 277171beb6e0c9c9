"""Variants of the flows TC program measured against each other (figures to stdout).

Each variant is collectors/flows/flows.bpf.c with one change, made here by text
substitution so the shipped source carries no experiment switches; a substitution
whose anchor is gone fails loudly instead of measuring the wrong thing. All variants
take turns on the same traffic in one pair of namespaces (tests/netns.py), one at a
time with an empty program behind it (the floor), order rotated each round; the
figures are medians of raw run_time_ns / run_cnt. bench/flows_bench.py writes the
shipped program's figures to RESULTS.md, and these variants' on a few scenarios;
this script runs them on any one scenario.

Usage: sudo .venv/bin/python bench/flows_variants.py [udp|fast|tcp] [flows] [rounds] [variant ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import veth_pair  # noqa: E402
from variants import variant_file  # noqa: E402

SRC = HERE.parent / "collectors" / "flows" / "flows.bpf.c"
TABLE = 'BPF_TABLE("lru_hash", struct flow_key, struct flow_val, flows, MAX_FLOWS);'
ATOMICS = "    __sync_fetch_and_add(&v->packets, packets);\n    __sync_fetch_and_add(&v->bytes, bytes);\n"
PLAIN = "    v->packets += packets;\n    v->bytes += bytes;\n"
LOOKUP = "    struct flow_val *v = flows.lookup(&key);\n"
KEY4 = """    struct flow_key4 k4 = {.ifindex = key.ifindex, .sport = key.sport, .dport = key.dport,
                           .proto = key.proto, .dir = key.dir};
    __builtin_memcpy(&k4.saddr, key.saddr, 4);
    __builtin_memcpy(&k4.daddr, key.daddr, 4);
    struct flow_val *v = flows4.lookup(&k4);
    if (!v) {
        struct flow_val nv = {.packets = packets, .bytes = bytes, .first = now, .last = now};
        flows4.insert(&k4, &nv);
        return TC_ACT_UNSPEC;
    }
"""
KEY4_TABLE = (
    TABLE
    + """
struct flow_key4 { u32 saddr, daddr, ifindex; u16 sport, dport; u8 proto, dir; u16 pad; };
BPF_TABLE("lru_hash", struct flow_key4, struct flow_val, flows4, MAX_FLOWS);"""
)


# The two reference programs (bench/flows_bench.py measures the shipped one against
# them): "parse only" is the program without per-flow state; "one array line" keeps its
# counters in one 64-byte array slot picked by a hash of the key, the least memory any
# exact per-flow counter has to touch. The distance from them says what the map costs.
ACCOUNT = "static __always_inline int account(struct __sk_buff *skb, u8 dir, u32 l2len)\n"
NOW = "    u64 now = bpf_jiffies64();\n"
REFERENCE = NOW + "    return bench_reference(&key, packets, bytes, now);\n"
PARSE_ONLY = """static __always_inline int bench_reference(struct flow_key *key, u64 packets, u64 bytes,
                                           u64 now)
{
    if (key->sport == 0xffff && now == 1) /* keeps the parse: the result is used */
        bump(CNT_NOT_IP);
    return TC_ACT_UNSPEC;
}

"""
ONE_LINE = """struct bench_slot { u64 w[8]; };
BPF_ARRAY(bench_slots, struct bench_slot, 65536);
static __always_inline int bench_reference(struct flow_key *key, u64 packets, u64 bytes,
                                           u64 now)
{
    u32 h = 0, *w = (u32 *)key;
#pragma unroll
    for (int i = 0; i < sizeof(*key) / 4; i++)
        h = (h ^ w[i]) * 0x9e3779b1;
    u32 idx = (h ^ (h >> 15)) & 65535;
    struct bench_slot *s = bench_slots.lookup(&idx);
    if (s) {
        s->w[0] += packets;
        s->w[1] += bytes;
        s->w[2] = now;
    }
    return TC_ACT_UNSPEC;
}

"""
REFERENCES = ("shipped", "parse only", "one array line")


def table(kind: str, flags: int = 0) -> str:
    return f'BPF_F_TABLE("{kind}", struct flow_key, struct flow_val, flows, MAX_FLOWS, {flags});'


# name -> (max_flows, [(anchor, replacement)], extra cflags, what it asks)
VARIANTS = {
    "shipped": (131072, [], [], "the program as shipped (LRU hash, 128k entries)"),
    "map 256k": (262144, [], [], "twice the entries"),
    "map 64k": (65536, [], [], "half the entries (bucket array 1 MiB instead of 2)"),
    "map 16k": (16384, [], [], "an eighth (TLB reach of the bucket array)"),
    "percpu values": (
        131072,
        [(TABLE, table("lru_percpu_hash")), (ATOMICS, PLAIN)],
        [],
        "LRU_PERCPU_HASH, plain adds, no lock prefix",
    ),
    "no common LRU": (131072, [(TABLE, table("lru_hash", 2))], [], "BPF_F_NO_COMMON_LRU"),
    "plain adds": (131072, [(ATOMICS, PLAIN)], [], "UNSAFE across CPUs: what the two atomics cost"),
    "ipv4 20-byte key": (
        131072,
        [(TABLE, KEY4_TABLE), (LOOKUP, KEY4)],
        [],
        "IPv4 in its own map with a dense key",
    ),
    "hash, no prealloc": (
        131072,
        [(TABLE, table("hash", 1))],
        [],
        "not LRU (no eviction): kmalloc'd elements",
    ),
    "parse only": (
        131072,
        [(ACCOUNT, PARSE_ONLY + ACCOUNT), (NOW, REFERENCE)],
        [],
        "no per-flow state at all",
    ),
    "one array line": (
        131072,
        [(ACCOUNT, ONE_LINE + ACCOUNT), (NOW, REFERENCE)],
        [],
        "counters in one 64-byte slot of a 64k array",
    ),
}


def variant_source(tmp: Path, name: str) -> list:
    max_flows, subs, cflags, _ = VARIANTS[name]
    return [str(variant_file(SRC, subs, tmp, name)), [f"-DMAX_FLOWS={max_flows}", *cflags]]


def references(tmp: Path) -> dict[str, list]:
    """The shipped program and the two references, as flows_bench.per_packet takes them."""
    return {n: variant_source(tmp, n) for n in REFERENCES}


def main() -> int:
    from flows_bench import enable_stats, per_packet

    if os.geteuid() != 0:
        print("flows_variants: needs root", file=sys.stderr)
        return 2
    kind = sys.argv[1] if len(sys.argv) > 1 else "udp"
    flows = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    names = sys.argv[4:] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if kind not in ("udp", "fast", "tcp") or unknown:
        print(
            f"flows_variants: traffic is udp, fast or tcp; variants are {', '.join(VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    stats_fd = enable_stats()
    try:
        with tempfile.TemporaryDirectory(prefix="ebpftop-variants-") as tmp, veth_pair("ebtv") as net:
            spec = {n: variant_source(Path(tmp), n) for n in names}
            res = per_packet(net, kind, flows, spec, rounds=rounds, window=4.0)
    finally:
        os.close(stats_fd)
    print(
        f"traffic: {kind}, {flows} flows, {res['direction']}; {rounds} rounds of 4 s; "
        f"load average {res['load'][0]:.1f}-{res['load'][1]:.1f}"
    )
    print(f"{'variant':20} {'raw ns':>7} {'floor':>6} {'minus floor':>11} {'runs/s':>8}  what it asks")
    for n in names:
        r = res[n]
        print(f"{n:20} {r['ns']:7.0f} {r['floor']:6.0f} {r['over']:11.0f} {r['rate']:8.0f}  {VARIANTS[n][3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
