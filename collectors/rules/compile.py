"""A rule list -> the map entries of one rule set (pure; no BPF here).

Classification is a bit-vector intersection of per-field tables, so the per-packet
cost does not depend on the rule count; the tables are chosen so the kernel makes no
function call for them. How each field is stored: collectors/rules/README.md
("How it works").
"""

from __future__ import annotations

import array
import bisect
import ipaddress
import itertools
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

# The limits, wildcard indexes (W_*) and field flags (F_* I_* H_* T_* P_*) the kernel
# reads: defined once, in rules.h
from .layout import (
    ACLS,
    ACTION_CODES,
    CHILD,
    F_DPORT,
    F_DST4,
    F_DST6,
    F_IFDIR,
    F_SPORT,
    F_SRC4,
    F_SRC6,
    F_TTL,
    H_DST4,
    H_SRC4,
    HSLOTS,
    I_DPORT,
    I_DST4,
    I_SPORT,
    I_SRC4,
    MAX_RULES,
    MAX_SLOTS,
    NODES,
    P_DPORT,
    P_SPORT,
    PCLS,
    PINT,
    PROTO_ENTRIES,
    T_DST4,
    T_SRC4,
    W_DPORT,
    W_DST4,
    W_DST6,
    W_SPORT,
    W_SRC4,
    W_SRC6,
    WORDS,
)
from .spec import PROTOS, Match, Rule, format_rule

ADDR_TRIE_MAX = MAX_RULES  # IPv6 trie entries per field: a rule names at most one prefix
MAX_KICKS = 200  # cuckoo moves tried for one host before it is left to the trie
# odd multiplier pairs tried in turn until every host has a slot; hosts that still have
# none go to the trie
MULTIPLIERS = (
    (0x9E3779B1, 0x85EBCA77),
    (0xC2B2AE3D, 0x27D4EB2F),
    (0x165667B1, 0xD3A2646D),
    (0xFD7046C5, 0xB55A4F09),
)
NO_EXPIRY = (1 << 64) - 1


class LimitError(ValueError):
    """The rule set does not fit the maps; names the rule and the limit."""


@dataclass
class Table:
    """A direct-indexed table: `root[v >> shift]` names a class, or (with CHILD) a node
    whose entries are indexed by the next 8 bits; `classes[i]` is class i's vector
    (class 0: no stored value matches: the field's wildcard rules only)."""

    root: array.array[int]
    nodes: list[array.array[int]] = field(default_factory=list)
    classes: list[int] = field(default_factory=lambda: [0])
    slots: list[tuple[int, int] | None] = field(default_factory=list)  # IPv4 hosts: (address, class) or empty
    mults: tuple[int, int] = (0, 0)  # a host is in slot_of(address, mults[0]) or slot_of(address, mults[1])
    trie: bool = True  # whether the kernel reads root/nodes (when the hash has no entry)
    hi: list[int] = field(default_factory=list)  # ports: each interval's last port, when at most PINT
    spans: list[int] = field(default_factory=list)  # ports: each interval's vector, beside `hi`

    def lookup(self, value: int, width: int) -> int:
        """The vector for `value`, read the way the kernel reads it."""
        if self.hi:
            return self.spans[bisect.bisect_left(self.hi, value)]
        if self.slots and value:
            for m in self.mults:
                got = self.slots[slot_of(value, m)]
                if got is not None and got[0] == value:
                    return self.classes[got[1]]
        if not self.trie:
            return self.classes[0]
        e = self.root[value >> (width - 16)]
        shift = width - 16
        while e & CHILD:
            shift -= 8
            e = self.nodes[e & ~CHILD][(value >> shift) & 0xFF]
        return self.classes[e]


@dataclass
class Compiled:
    tries: dict[str, dict[tuple[int, bytes], int]] = field(
        default_factory=dict
    )  # src6/dst6: (plen, data) -> bits
    tables: dict[str, Table] = field(default_factory=dict)  # src4, dst4, sport, dport
    proto: list[int] = field(default_factory=lambda: [0] * PROTO_ENTRIES)
    inline: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (network, mask) or (lo, hi)
    ifdir: dict[int, int] = field(default_factory=dict)  # ifindex*2 + (0 in, 1 out) -> bits
    wild: list[int] = field(default_factory=lambda: [0] * 8)  # rules not constraining the field (W_*)
    rules: list[tuple[int, int, int]] = field(default_factory=list)  # (slot, action, expires in jiffies or 0)
    exptimes: list[int] = field(default_factory=list)  # sorted distinct expiry times
    alive: list[int] = field(default_factory=list)  # alive[k]: rules alive once k exptimes passed
    fields: int = 0


def pack_bits(bits: int) -> bytes:
    return bits.to_bytes(8 * WORDS, "little")


def _union_prefixes(entries: dict[tuple[int, int], int], width: int) -> dict[tuple[int, int], int]:
    """(plen, value) -> bits, each widened with every containing prefix's bits."""
    out = {}
    for (plen, value), bits in entries.items():
        acc = bits
        for p in range(plen):
            anc = (p, value >> (width - p) << (width - p)) if p else (0, 0)
            acc |= entries.get(anc, 0)
        out[(plen, value)] = acc
    return out


def _class(t: Table, ids: dict[int, int], bits: int) -> int:
    if bits not in ids:
        ids[bits] = len(t.classes)
        t.classes.append(bits)
    return ids[bits]


def slot_of(address: int, mult: int) -> int:
    return ((address * mult) >> 22) & (HSLOTS - 1)


Slots = list[tuple[int, int] | None]  # the host hash: (address, class) or empty


def _cuckoo(hosts: dict[int, int], mults: tuple[int, int]) -> tuple[Slots, dict[int, int]]:
    """Each host in one of its two slots, moving others to their other slot to make room;
    returns the slots and the hosts left without one."""
    slots: Slots = [None] * HSLOTS
    left: dict[int, int] = {}
    for host in hosts.items():
        entry: tuple[int, int] | None = host
        at = slot_of(host[0], mults[0])
        for _ in range(MAX_KICKS):
            entry, slots[at] = slots[at], entry
            if entry is None:
                break
            a, b = (slot_of(entry[0], m) for m in mults)
            at = b if at == a else a
        else:
            if entry is not None:  # always, after the last kick: it is the host left out
                left[entry[0]] = entry[1]
    return slots, left


def _hash_hosts(t: Table, hosts: dict[int, int]) -> dict[int, int]:
    """Put host -> class entries in the hash; returns those that fit no slot."""
    best: tuple[Slots, tuple[int, int], dict[int, int]] | None = None
    for mults in MULTIPLIERS:
        slots, left = _cuckoo(hosts, mults)
        if best is None or len(left) < len(best[2]):
            best = (slots, mults, left)
        if not left:
            break
    assert best is not None  # MULTIPLIERS is not empty
    t.slots, t.mults, left = best
    return left


def address_table(entries: dict[tuple[int, int], int], name: str, wild: int) -> Table:
    """IPv4 prefixes (already widened) -> host hash + 16-8-8 trie, match pushed to leaves.
    Hosts (/32, but 0.0.0.0, the hash's empty key) go to the hash, the rest to the trie.
    Shorter prefixes are written first, so a longer one overwrites its part of them and a
    new node starts as a copy of the class it refines. Classes include `wild`."""
    t = Table(array.array("H", bytes(2 * 65536)), classes=[wild])
    ids = {wild: 0}
    hosts = {
        value: _class(t, ids, bits | wild) for (plen, value), bits in entries.items() if plen == 32 and value
    }
    left = _hash_hosts(t, hosts) if hosts else {}
    entries = {k: b for k, b in entries.items() if not (k[0] == 32 and k[1] in hosts and k[1] not in left)}
    t.trie = bool(entries)

    def child(entries_of: array.array[int], i: int) -> array.array[int]:
        e = entries_of[i]
        if not e & CHILD:
            if len(t.nodes) >= NODES:
                raise LimitError(
                    f"{name}: the IPv4 prefixes need more than {NODES} trie nodes; nothing was changed"
                )
            t.nodes.append(array.array("H", [e] * 256))
            e = entries_of[i] = CHILD | (len(t.nodes) - 1)
        return t.nodes[e & ~CHILD]

    for (plen, value), bits in sorted(entries.items()):
        c = _class(t, ids, bits | wild)
        if plen <= 16:
            lo = value >> 16
            t.root[lo : lo + (1 << (16 - plen))] = array.array("H", [c] * (1 << (16 - plen)))
            continue
        node = child(t.root, value >> 16)
        if plen > 24:
            node = child(node, (value >> 8) & 0xFF)
        if plen > 24:
            lo, span = value & 0xFF, 1 << (32 - plen)
        else:
            lo, span = (value >> 8) & 0xFF, 1 << (24 - plen)
        node[lo : lo + span] = array.array("H", [c] * span)
    if len(t.classes) > ACLS:
        raise LimitError(f"{name}: more than {ACLS} distinct address classes; nothing was changed")
    return t


def port_table(ranges: list[tuple[int, int, int]], wild: int) -> Table:
    """(lo, hi, bits) ranges -> one class per port: the intervals between range ends.
    Classes include `wild`."""
    t = Table(array.array("H", bytes(2 * 65536)), classes=[wild])
    ids = {wild: 0}
    cuts = sorted({0, 65536} | {lo for lo, _, _ in ranges} | {hi + 1 for _, hi, _ in ranges})
    for a, b in itertools.pairwise(cuts):
        bits = 0
        for lo, hi, rb in ranges:
            if lo <= a and b - 1 <= hi:
                bits |= rb
        if bits:
            t.root[a:b] = array.array("H", [_class(t, ids, bits | wild)] * (b - a))
        if len(cuts) - 1 <= PINT:
            t.hi.append(b - 1)
            t.spans.append(bits | wild)
    return t


_FLAGS = {"src4": F_SRC4, "src6": F_SRC6, "dst4": F_DST4, "dst6": F_DST6, "sport": F_SPORT, "dport": F_DPORT}
_INLINE = {"src4": I_SRC4, "dst4": I_DST4, "sport": I_SPORT, "dport": I_DPORT}
_WILD = {"src4": W_SRC4, "dst4": W_DST4, "sport": W_SPORT, "dport": W_DPORT}

Prefixes = dict[str, dict[tuple[int, int], int]]  # src4/src6/dst4/dst6: (plen, value) -> bits
Ranges = dict[str, list[tuple[int, int, int]]]  # sport/dport: (lo, hi, bit)


def compile_rules(
    rules: list[Rule],
    ifindex: Callable[[str], int] = socket.if_nametoindex,
    expires: Callable[[Rule], float] = lambda r: 0,
) -> Compiled:
    """Map entries for `rules` in priority order. `ifindex(name)` resolves interfaces
    (OSError: no such interface); `expires(rule)` gives the kernel expiry in jiffies
    (0 = none)."""
    if len(rules) > MAX_RULES:
        raise LimitError(f"{len(rules)} rules: the datapath holds at most {MAX_RULES}; nothing was changed")
    c = Compiled()
    prefixes: Prefixes = {n: {} for n in ("src4", "src6", "dst4", "dst6")}
    ranges: Ranges = {"sport": [], "dport": []}
    for pos, rule in enumerate(rules):
        _place_rule(c, prefixes, ranges, pos, rule, ifindex, expires)
    _address_lookups(c, prefixes)
    _port_lookups(c, ranges)
    if c.ifdir:
        c.fields |= F_IFDIR
    _expiry_steps(c)
    return c


def _place_rule(
    c: Compiled,
    prefixes: Prefixes,
    ranges: Ranges,
    pos: int,
    rule: Rule,
    ifindex: Callable[[str], int],
    expires: Callable[[Rule], float],
) -> None:
    """Rule `pos` sets its bit in every entry its match allows."""
    bit = 1 << pos
    m = rule.match
    _place_addresses(c, prefixes, m, bit)
    for name, rng, w in (("sport", m.sport, W_SPORT), ("dport", m.dport, W_DPORT)):
        if rng is None:
            c.wild[w] |= bit
        else:
            ranges[name].append((rng[0], rng[1], bit))
    dirs = (0, 1) if m.direction is None else ((0,) if m.direction == "in" else (1,))
    _place_protocols(c, m, dirs, bit)
    if m.iface is not None:
        try:
            idx = ifindex(m.iface)
        except OSError:
            raise LimitError(
                f"rule {pos + 1} ({format_rule(rule)}): no interface named {m.iface!r} "
                "in this network namespace; nothing was changed"
            ) from None
        for d in dirs:
            c.ifdir[idx * 2 + d] = c.ifdir.get(idx * 2 + d, 0) | bit
    if rule.slot < 0 or rule.slot >= MAX_SLOTS:
        raise ValueError(f"rule {rule.id} has no counter slot")
    c.rules.append((rule.slot, ACTION_CODES[rule.action], int(expires(rule))))


def _place_addresses(c: Compiled, prefixes: Prefixes, m: Match, bit: int) -> None:
    for name, cidr, w4, w6 in (("src", m.src, W_SRC4, W_SRC6), ("dst", m.dst, W_DST4, W_DST6)):
        if cidr is None:
            if m.family in (None, 4):
                c.wild[w4] |= bit
            if m.family in (None, 6):
                c.wild[w6] |= bit
            continue
        net = ipaddress.ip_network(cidr)
        key = (net.prefixlen, int(net.network_address))
        table = prefixes[f"{name}{net.version}"]
        table[key] = table.get(key, 0) | bit


def _place_protocols(c: Compiled, m: Match, dirs: tuple[int, ...], bit: int) -> None:
    # The layout is rules.h's (proto): per direction for rules on any interface, then
    # per family for every rule (the kernel ANDs those with the interface's vector).
    fam = m.family
    for v6 in (0, 1) if fam is None else ((1,) if fam == 6 else (0,)):
        for p in PROTOS[m.proto] or range(256):
            c.proto[1024 + v6 * 256 + p] |= bit
            if m.iface is None:
                for d in dirs:
                    c.proto[(v6 * 2 + d) * 256 + p] |= bit


def _address_lookups(c: Compiled, prefixes: Prefixes) -> None:
    """Each address field the rules use: one inline prefix, a hash/trie table (v4) or an LPM trie (v6)."""
    for name, entries in prefixes.items():
        if not entries:
            continue
        c.fields |= _FLAGS[name]
        if len(entries) == 1 and name.endswith("4"):
            ((plen, value),) = entries
            c.fields |= _INLINE[name]
            c.inline[name] = (value, (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        elif name.endswith("4"):
            t = c.tables[name] = address_table(_union_prefixes(entries, 32), name, c.wild[_WILD[name]])
            c.fields |= (H_SRC4 if name == "src4" else H_DST4) if t.slots else 0
            c.fields |= (T_SRC4 if name == "src4" else T_DST4) if t.trie else 0
            c.inline[name] = t.mults  # the kernel reads the multipliers from struct cfg
        else:
            c.tries[name] = {
                (plen, value.to_bytes(16, "big")): bits
                for (plen, value), bits in _union_prefixes(entries, 128).items()
            }


def _port_lookups(c: Compiled, ranges: Ranges) -> None:
    """Each port field the rules use: one inline range, else a per-port class table."""
    for name, found in ranges.items():
        if not found:
            continue
        c.fields |= _FLAGS[name]
        if len({(lo, hi) for lo, hi, _ in found}) == 1:
            c.fields |= _INLINE[name]
            c.inline[name] = found[0][:2]
        else:
            t = c.tables[name] = port_table(found, c.wild[_WILD[name]])
            c.fields |= (P_SPORT if name == "sport" else P_DPORT) if t.hi else 0


def _expiry_steps(c: Compiled) -> None:
    """alive[k]: the rules still alive once the k first distinct expiry times passed."""
    expiring = [(e, 1 << pos) for pos, (_, _, e) in enumerate(c.rules) if e]
    if not expiring:
        return
    c.fields |= F_TTL
    c.exptimes = sorted({e for e, _ in expiring})
    alive = (1 << len(c.rules)) - 1
    c.alive = [alive]
    for t in c.exptimes:
        for e, bit in expiring:
            if e == t:
                alive &= ~bit
        c.alive.append(alive)


def lpm_key(plen: int, data: bytes) -> bytes:
    """struct { u32 prefixlen; u8 data[16]; } as the kernel wants it."""
    return struct.pack("<I", plen) + data


def pack_intervals(t: Table) -> bytes:
    """struct pint of rules.bpf.c: the intervals' last ports (padded with 65535, which
    the search never passes) and their vectors."""
    pad = PINT - len(t.hi)
    return struct.pack(f"<{PINT}H", *t.hi, *[65535] * pad) + b"".join(
        pack_bits(v) for v in t.spans + [0] * pad
    )


def pack_table(t: Table, width: int) -> bytes:
    """struct ptab (ports) or struct a4tab (IPv4) of rules.bpf.c, as one map value."""
    out = bytearray()
    if width == 32:
        for got in t.slots or [None] * HSLOTS:
            out += struct.pack("<I28x", got[0]) + pack_bits(t.classes[got[1]]) if got else bytes(64)
    out += t.root.tobytes()
    if width == 32:
        node_bytes = bytearray(2 * 256 * NODES)
        for i, node in enumerate(t.nodes):
            node_bytes[512 * i : 512 * (i + 1)] = node.tobytes()
        out += node_bytes
    ncls = ACLS if width == 32 else PCLS
    cls = bytearray(8 * WORDS * ncls)
    for i, bits in enumerate(t.classes):
        cls[32 * i : 32 * (i + 1)] = pack_bits(bits)
    return bytes(out + cls)
