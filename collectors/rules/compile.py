"""A rule list -> the map entries of one rule set (pure; no BPF here).

Classification is a bit-vector intersection: bit i stands for the rule at position i
(position 0 = highest priority). Every field gives the set of rules it allows: the
rules that do not constrain the field (its wildcard vector) OR the vector stored for
the packet's value (an LPM trie for addresses and ports, an array for the protocol,
a hash for interface+direction). The kernel ANDs the fields, drops the rules whose TTL
has passed (a vector chosen by a fixed binary search over the set's expiry times) and
takes the lowest set bit. Cost per packet does not depend on the rule count.

LPM tries return only the longest matching prefix, so each stored prefix carries the
union of the vectors of every stored prefix that contains it. Port ranges compile to
the aligned power-of-two blocks that cover them (at most 30 per range).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from .spec import PROTOS, Rule, format_rule

MAX_RULES = 256
WORDS = MAX_RULES // 64
MAX_SLOTS = 2 * MAX_RULES  # a full set being replaced by another full set needs both
ADDR_TRIE_MAX = 1024  # per field and family
PORT_TRIE_MAX = 4096  # per field (sport, dport)
ACTION_CODES = {"count": 0, "allow": 1, "deny": 2}

# wildcard vector indexes (match rules.bpf.c)
W_SRC4, W_SRC6, W_DST4, W_DST6, W_SPORT, W_DPORT, W_IN, W_OUT = range(8)
# which lookups the kernel must do (a field nobody constrains is skipped)
F_SRC4, F_SRC6, F_DST4, F_DST6, F_SPORT, F_DPORT, F_IFDIR, F_TTL = (1 << i for i in range(8))
NO_EXPIRY = (1 << 64) - 1


class LimitError(ValueError):
    """The rule set does not fit the maps; names the rule and the limit."""


@dataclass
class Compiled:
    tries: dict[str, dict[tuple[int, bytes], int]] = field(default_factory=dict)  # name -> (plen, data) -> bits
    proto: list[int] = field(default_factory=lambda: [0] * 256)
    ifdir: dict[int, int] = field(default_factory=dict)  # ifindex*2 + (0 in, 1 out) -> bits
    wild: list[int] = field(default_factory=lambda: [0] * 8)
    rules: list[tuple[int, int, int]] = field(default_factory=list)  # (slot, action, expires_ns or 0)
    exptimes: list[int] = field(default_factory=list)  # sorted distinct expiry ns
    alive: list[int] = field(default_factory=list)  # alive[k]: rules alive once k exptimes passed
    fields: int = 0


def pack_bits(bits: int) -> bytes:
    return bits.to_bytes(8 * WORDS, "little")


def port_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] as aligned blocks: (prefix length over 16 bits, first port)."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((16 - size.bit_length() + 1, lo))
        lo += size
    return out


def _union_prefixes(entries: dict[tuple[int, int], int], width: int) -> dict[tuple[int, bytes], int]:
    """(plen, value as int) -> bits, each widened with every containing prefix's bits."""
    nbytes = width // 8
    out = {}
    for (plen, value), bits in entries.items():
        acc = bits
        for p in range(plen):
            anc = (p, value >> (width - p) << (width - p)) if p else (0, 0)
            acc |= entries.get(anc, 0)
        out[(plen, value.to_bytes(nbytes, "big"))] = acc
    return out


def compile_rules(rules: list[Rule], ifindex=socket.if_nametoindex, expires_ns=lambda r: 0) -> Compiled:
    """Map entries for `rules` in priority order. `ifindex(name)` resolves interfaces
    (OSError: no such interface); `expires_ns(rule)` gives the kernel expiry (0 = none)."""
    if len(rules) > MAX_RULES:
        raise LimitError(f"{len(rules)} rules: the datapath holds at most {MAX_RULES}; nothing was changed")
    c = Compiled()
    raw: dict[str, dict[tuple[int, int], int]] = {n: {} for n in ("src4", "src6", "dst4", "dst6", "sport", "dport")}
    for pos, rule in enumerate(rules):
        bit = 1 << pos
        m = rule.match
        fam = m.family
        for name, cidr, w4, w6 in (("src", m.src, W_SRC4, W_SRC6), ("dst", m.dst, W_DST4, W_DST6)):
            if cidr is None:
                if fam in (None, 4):
                    c.wild[w4] |= bit
                if fam in (None, 6):
                    c.wild[w6] |= bit
                continue
            net = ipaddress.ip_network(cidr)
            key = (net.prefixlen, int(net.network_address))
            table = raw[f"{name}{net.version}"]
            table[key] = table.get(key, 0) | bit
        for name, rng, w in (("sport", m.sport, W_SPORT), ("dport", m.dport, W_DPORT)):
            if rng is None:
                c.wild[w] |= bit
                continue
            for plen, start in port_blocks(*rng):
                raw[name][(plen, start)] = raw[name].get((plen, start), 0) | bit
            if len(raw[name]) > PORT_TRIE_MAX:
                raise LimitError(
                    f"rule {pos + 1} ({format_rule(rule)}): port ranges need more than {PORT_TRIE_MAX} {name} "
                    f"trie entries in this set; use fewer or simpler ranges; nothing was changed")
        for p in (PROTOS[m.proto] or range(256)):
            c.proto[p] |= bit
        dirs = (0, 1) if m.direction is None else ((0,) if m.direction == "in" else (1,))
        if m.iface is None:
            for d in dirs:
                c.wild[W_IN + d] |= bit
        else:
            try:
                idx = ifindex(m.iface)
            except OSError:
                raise LimitError(f"rule {pos + 1} ({format_rule(rule)}): no interface named {m.iface!r} "
                                 "in this network namespace; nothing was changed") from None
            for d in dirs:
                c.ifdir[idx * 2 + d] = c.ifdir.get(idx * 2 + d, 0) | bit
        if rule.slot < 0 or rule.slot >= MAX_SLOTS:
            raise ValueError(f"rule {rule.id} has no counter slot")
        c.rules.append((rule.slot, ACTION_CODES[rule.action], int(expires_ns(rule))))
    flags = {"src4": F_SRC4, "src6": F_SRC6, "dst4": F_DST4, "dst6": F_DST6, "sport": F_SPORT, "dport": F_DPORT}
    for name, entries in raw.items():
        width = 16 if "port" in name else (32 if name.endswith("4") else 128)
        if "port" not in name and len(entries) > ADDR_TRIE_MAX:
            raise LimitError(f"{len(entries)} distinct {name} prefixes; the trie holds {ADDR_TRIE_MAX}")
        c.tries[name] = _union_prefixes(entries, width)
        if entries:
            c.fields |= flags[name]
    if c.ifdir:
        c.fields |= F_IFDIR
    expiring = [(e, 1 << pos) for pos, (_, _, e) in enumerate(c.rules) if e]
    if expiring:
        c.fields |= F_TTL
        c.exptimes = sorted({e for e, _ in expiring})
        alive = (1 << len(c.rules)) - 1
        c.alive = [alive]
        for t in c.exptimes:
            for e, bit in expiring:
                if e == t:
                    alive &= ~bit
            c.alive.append(alive)
    return c


def lpm_key(plen: int, data: bytes, width: int) -> bytes:
    """struct { u32 prefixlen; u8 data[...]; } as the kernel wants it (ports pad to 4)."""
    if width == 16:
        data = data + b"\0\0"
    return struct.pack("<I", plen) + data
