"""Instructions the rules program runs for one packet, per rule set (figures to stdout).

Time per packet on this VM moves by several ns between runs; the number of instructions
a packet runs does not. This loads each of bench/rules_bench.py's rule sets as a real
RuleBook in a namespace of its own, takes the program as the verifier left it (bpftool's
raw xlated dump, after the kernel's inlining of array lookups, jiffies and the CPU
number) and the set's map value, and replays the program on the benchmark's packet
(UDP from B to A, port 1024) in a small BPF interpreter. The replay stops at a call,
which the IPv4 path never makes. It counts instructions; it does not time them.

Usage: sudo .venv/bin/python bench/rules_insns.py [sets] [--lines]
       sets: comma-separated of 1,64,256,2T,256T (default all); --lines: where they go
"""

from __future__ import annotations

import collections
import json
import re
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402

SETS = {"1": (1, False), "64": (64, False), "256": (256, False), "2T": (2, True), "256T": (256, True)}

AGENT = r"""
import json, os, subprocess, sys
from ebpftop.collectors.flows import tcx
from ebpftop.collectors.rules import bpfsys
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
pin, state, iface, rules, out = sys.argv[1:6]
def bpftool(*args):
    return subprocess.run(["bpftool", *args], capture_output=True, text=True, check=True)
book = RuleBook(pin, state, (iface,))
try:
    book.replace([r for _, r in parse_text(open(rules).read())[0]], "bench")
    fd = bpfsys.obj_get(pin + "/prog_ebpftop_rl_in")
    prog = tcx.prog_id_of_fd(fd)
    os.close(fd)
    for fmt, name in ((["file", out + "/xlated.raw"], None), ([], "xlated.txt")):
        got = bpftool("prog", "dump", "xlated", "id", str(prog), *fmt)
        if name:
            open(out + "/" + name, "w").write(got.stdout)
    info = json.loads(bpftool("-j", "prog", "show", "id", str(prog)).stdout)
    maps = {}
    for mid in info["map_ids"]:
        m = json.loads(bpftool("-j", "map", "show", "id", str(mid)).stdout)
        maps[mid] = m["name"]
    json.dump({"maps": maps, "active": book.dp.active()}, open(out + "/meta.json", "w"))
    for s in (0, 1):
        open(out + f"/set_{'ab'[s]}.bin", "wb").write(bytes(book.dp._set(s)))
finally:
    book.dp.remove()
    book.state.remove()
    book.close()
"""

U64 = (1 << 64) - 1
SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
ARRAY_VALUE = 312  # offsetof(struct bpf_array, value): the inlined lookup adds it to the map's address
PKT, CTX, KVAR, PERCPU, STACK, MAPS = (
    0x2000_0000,
    0x3000_0000,
    0x4000_0000,
    0x5000_0000,
    0x1000_0000,
    0x6000_0000,
)
# struct sk_buff offsets the verifier rewrote __sk_buff reads to (6.x, x86-64): only what the IPv4 path reads
SKB_DATA, SKB_DATA_END, SKB_PROTOCOL, SKB_LEN = 200, 80, 176, 112


class Memory:
    def __init__(self) -> None:
        self.regions: list[tuple[int, bytearray]] = []

    def add(self, base: int, data: bytearray) -> None:
        self.regions.append((base, data))

    def _at(self, addr: int, n: int) -> tuple[bytearray, int]:
        for base, data in self.regions:
            if base <= addr and addr + n <= base + len(data):
                return data, addr - base
        raise RuntimeError(f"read or write outside every region: {addr:#x}")

    def load(self, addr: int, n: int) -> int:
        data, off = self._at(addr, n)
        return int.from_bytes(data[off : off + n], "little")

    def store(self, addr: int, n: int, value: int) -> None:
        data, off = self._at(addr, n)
        data[off : off + n] = (value & ((1 << 8 * n) - 1)).to_bytes(n, "little")


def signed(x: int, bits: int) -> int:
    return x - (1 << bits) if x >> (bits - 1) else x


# BPF ALU operations by opcode, on (dst, src, width) already masked to the width
ALU = {
    0x00: lambda a, b, w: a + b,
    0x10: lambda a, b, w: a - b,
    0x20: lambda a, b, w: a * b,
    0x30: lambda a, b, w: a // b if b else 0,
    0x40: lambda a, b, w: a | b,
    0x50: lambda a, b, w: a & b,
    0x60: lambda a, b, w: a << (b % w),
    0x70: lambda a, b, w: a >> (b % w),
    0x80: lambda a, b, w: -a,
    0x90: lambda a, b, w: a % b if b else a,
    0xA0: lambda a, b, w: a ^ b,
    0xB0: lambda a, b, w: b,
    0xC0: lambda a, b, w: signed(a, w) >> (b % w),
}


def replay(
    insns: list[tuple[int, int, int, int]], mem: Memory, map_base: dict[int, int]
) -> tuple[list[int], int]:
    """Run from instruction 0 to exit; the indexes run, and r0."""
    reg = [0] * 11
    reg[1], reg[10] = CTX, STACK
    pc, trace = 0, []
    while True:
        op, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        trace.append(pc)
        cls, code, x = op & 7, op & 0xF0, bool(op & 8)
        # 64-bit immediate: a map (by id in the dump), a kernel variable (jiffies) or a constant
        if op == 0x18:
            value = ((insns[pc + 1][3] & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF)
            reg[dst] = map_base[imm] if src == 1 else KVAR if value >> 47 == 0x1FFFF else value
            pc += 2
            continue
        if cls in (4, 7):  # ALU32 / ALU64
            width = 64 if cls == 7 else 32
            mask = (1 << width) - 1
            a = reg[dst] & mask
            b = (reg[src] if x else imm & U64) & mask
            if code == 0xB0 and x and off == -1:  # BPF_MOV64_PERCPU_REG: this CPU's copy (CPU 0, all zero)
                r = PERCPU + (reg[src] & 0xFFF)
            elif code == 0xD0:  # byte swap to big endian (x) or truncation
                r = (
                    int.from_bytes((a & ((1 << imm) - 1)).to_bytes(imm // 8, "little"), "big")
                    if x
                    else a & ((1 << imm) - 1)
                )
            else:
                r = ALU[code](a, b, width)
            reg[dst] = r & mask
        elif cls == 1:
            reg[dst] = mem.load((reg[src] + off) & U64, SIZES[op & 0x18])
        elif cls == 3:
            mem.store((reg[dst] + off) & U64, SIZES[op & 0x18], reg[src])
        elif cls == 2:
            mem.store((reg[dst] + off) & U64, SIZES[op & 0x18], imm & U64)
        elif cls in (5, 6):
            if code == 0x90:
                return trace, reg[0]
            if code == 0x80:
                raise RuntimeError(f"a call at instruction {pc}: not on the IPv4 path")
            if code == 0x00:
                pc += 1 + off
                continue
            bits = 64 if cls == 5 else 32
            a, b = reg[dst] & ((1 << bits) - 1), (reg[src] if x else imm & U64) & ((1 << bits) - 1)
            sa, sb = signed(a, bits), signed(b, bits)
            taken = {
                0x10: a == b,
                0x20: a > b,
                0x30: a >= b,
                0x40: bool(a & b),
                0x50: a != b,
                0x60: sa > sb,
                0x70: sa >= sb,
                0xA0: a < b,
                0xB0: a <= b,
                0xC0: sa < sb,
                0xD0: sa <= sb,
            }[code]
            pc += 1 + (off if taken else 0)
            continue
        else:
            raise RuntimeError(f"opcode {op:#x} at {pc}")
        pc += 1


def packet(src: str, dst: str) -> bytearray:
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 64, 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return bytearray(
        b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, 1024, 72, 0) + b"x" * 64
    )


def count(out: Path, src: str, dst: str) -> tuple[list[int], int, int | None]:
    """(instructions run, r0, the set position whose counter the packet bumped)."""
    meta = json.loads((out / "meta.json").read_text())
    raw = (out / "xlated.raw").read_bytes()
    insns = [struct.unpack_from("<BBhi", raw, i) for i in range(0, len(raw), 8)]
    mem = Memory()
    pkt = packet(src, dst)
    ctx = bytearray(256)
    struct.pack_into("<Q", ctx, SKB_DATA, PKT)
    struct.pack_into("<Q", ctx, SKB_DATA_END, PKT + len(pkt))
    struct.pack_into("<H", ctx, SKB_PROTOCOL, socket.htons(0x0800))
    struct.pack_into("<I", ctx, SKB_LEN, len(pkt))
    for base, data in (
        (STACK - 512, bytearray(512)),
        (PKT, pkt),
        (CTX, ctx),
        (KVAR, bytearray(struct.pack("<Q", 1000))),
        (PERCPU, bytearray(4096)),
    ):
        mem.add(base, data)
    map_base, counters = {}, bytearray(0x10_0000)
    for i, (mid, name) in enumerate(meta["maps"].items()):
        base = map_base[int(mid)] = MAPS + i * 0x100_0000
        if name.startswith("set_"):
            value = bytearray((out / f"{name}.bin").read_bytes())
        elif name == "active":
            value = bytearray(struct.pack("<II", meta["active"], 0))
        elif name == "counters":
            value = counters
        else:
            value = bytearray(0x10_0000)  # counters, base: zero is what the path reads
        mem.add(base, bytearray(ARRAY_VALUE))
        mem.add(base + ARRAY_VALUE, value)
    trace, r0 = replay(insns, mem, map_base)
    bumped = [
        i for i in range(0, len(counters), 32) if counters[i : i + 8] != bytes(8)
    ]  # struct counter: 32 bytes
    return trace, r0, (bumped[0] // 32) % 256 if bumped else None  # [cpu][set][position], 256 positions a set


def lines(out: Path, trace: list[int]) -> list[tuple[str, int]]:
    """Instructions run per source line (bcc keeps line info in the dump)."""
    where, cur = {}, ""
    for text in (out / "xlated.txt").read_text().splitlines():
        if text.startswith(";"):
            cur = text[1:].strip()
        elif m := re.match(r"\s*(\d+): ", text):
            where[int(m.group(1))] = cur
    return collections.Counter(where.get(i, "") for i in trace).most_common(12)


def main() -> int:
    from rules_bench import rule_file

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sets = args[0].split(",") if args else list(SETS)
    if any(s not in SETS for s in sets):
        print(f"rules_insns: sets are {', '.join(SETS)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-rules-insns-"))
    with veth_pair("ebri") as net:
        for s in sets:
            out = tmp / s.replace(" ", "")
            out.mkdir()
            rules = rule_file(tmp, s, *SETS[s], net.a_ip4, net.b_ip4, ports="1000-1999")
            got = subprocess.run(
                [
                    "nsenter",
                    f"--net=/run/netns/{net.a.name}",
                    PYTHON,
                    "-c",
                    AGENT,
                    f"/sys/fs/bpf/ebpftop-insns-{s}",
                    str(out / "state"),
                    net.a_if,
                    str(rules),
                    str(out),
                ],
                capture_output=True,
                text=True,
            )
            if got.returncode:
                print(got.stderr[-2000:], file=sys.stderr)
                return 1
            trace, r0, hit = count(out, net.b_ip4, net.a_ip4)
            total = len((out / "xlated.raw").read_bytes()) // 8
            print(
                f"{s:5} {len(trace):4} instructions run for the packet (program: {total}); returns "
                f"{signed(r0 & 0xFFFFFFFF, 32)}; "
                f"counted as rule {hit + 1 if hit is not None else 'none'} of {SETS[s][0]}"
            )
            if "--lines" in sys.argv:
                for text, n in lines(out, trace):
                    print(f"      {n:4}  {text[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
