"""One connection, one row: the kernel map's entries merged into connections, each
packet counted once.

The kernel keeps one entry per 5-tuple, interface and direction (flows.h): a TCP
connection from a namespace through the lab's bridge is four to six entries, each of
its two ways (the packets from one end to the other) once per hook that saw it. Here:

- a connection is its protocol and its two ends, whichever way a packet went
  (`conn_key`); its entries are the hooks that saw it, each carrying one way;
- a way's packets, bytes and what moved since the last tick are each the largest figure
  any of its hooks counted: a packet seen on three interfaces is one packet (the hooks
  may differ by a link-layer header; the largest is kept). A way split over hooks that
  each see only part of it (two uplinks, ECMP) is undercounted: its largest part is kept;
- a connection's figures are the sum of its two ways; what moved is unknown (None) only
  when no hook of it knows, as for one entry (rates.moved);
- the connection's forward way goes from client to server: when one port is below the
  ephemeral range (32768, Linux's default start) and the other in it, towards the lower
  port (a connection already open when ebpftop started may show its answers first);
  otherwise the way whose first packet was seen first (the end that spoke first, a TCP
  client from its SYN); seen in the same jiffy, the way towards the lower port.

Cost: while the map holds the same keys in the same order (a steady map), the last
tick's plan is kept and a tick costs a few C loops over columns: none when no
connection has two entries (one hook, one-way traffic: the columns as they are), a sum
for connections of one hook each way, and Python only for connections seen on several
hooks. When the keys change, every entry's connection is looked up in a dict kept
across ticks (a new entry is worked out once) and the plan is made again, in Python
only for the entries of connections that have several.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat

from .table import FlowTable

_PORTS = struct.Struct("=HH")  # sport, dport at offset 36 of a flow_key (layout.FLOW_KEY)
EPHEMERAL = 32768  # where Linux's default ip_local_port_range starts: client ports

# What a connection holds: the entry index of a connection seen at one hook, one way,
# else the indices of all its entries (the last one first).
Members = int | tuple[int, ...]


def conn_key(raw: bytes) -> bytes:
    """The connection of a raw flow_key: its two ends (address, port) in a fixed order,
    then protocol and family; the same for every hook and both ways."""
    a = raw[0:16] + raw[36:38]
    b = raw[16:32] + raw[38:40]
    return (a + b if a <= b else b + a) + raw[40:42]


def lower_to_higher(raw: bytes, conn: bytes) -> bool:
    """Whether this entry's packets go from the first end of `conn` to the second."""
    return raw[0:16] + raw[36:38] == conn[0:18]


@dataclass
class Connections:
    """One tick's connections by column (index c), and the entries each stands for."""

    moved_bytes: list[int | None]
    moved_packets: list[int | None]
    nbytes: list[int]
    packets: list[int]
    members: Sequence[Members]

    def __len__(self) -> int:
        return len(self.members)


def _largest(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _plus(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


@dataclass
class _Plan:
    """How one layout of the map (its keys, in their order) merges: made again only
    when the keys change, so a steady map costs a comparison and a few C loops."""

    raw_keys: bytes
    alone: list[bool] | None  # entries that are a connection by themselves; None: all are
    pair_a: list[int]  # two-entry connections, one hook each way: summed, no max
    pair_b: list[int]
    groups: list[tuple[tuple[int, ...], tuple[bool, ...]]]  # the rest: entries, each one's way
    members: Sequence[Members]


class Merger:
    """Merges each tick's map into connections; keeps the raw key -> connection answers
    while the entries live, and the last layout's plan."""

    def __init__(self) -> None:
        self._conn: dict[bytes, bytes] = {}
        self._plan: _Plan | None = None

    def conns_of(self, keys: list[bytes]) -> list[bytes]:
        cache = self._conn
        conns: list[bytes | None] = list(map(cache.get, keys))
        if None in conns:
            for i in compress(range(len(keys)), map(operator.is_, conns, repeat(None))):
                conns[i] = cache[keys[i]] = conn_key(keys[i])
        if len(cache) > 2 * len(keys) + 4096:  # entries gone from the map: forget them
            self._conn = dict(zip(keys, conns, strict=True))  # type: ignore[arg-type]
        return conns  # type: ignore[return-value]

    def plan(self, table: FlowTable) -> _Plan:
        plan = self._plan
        if plan is not None and table.raw_keys and plan.raw_keys == table.raw_keys:
            return plan
        keys, n = table.keys, len(table)
        conns = self.conns_of(keys)
        last = dict(zip(conns, range(n), strict=True))
        if len(last) == n:
            plan = _Plan(table.raw_keys, None, [], [], [], range(n))
        else:
            at = list(map(last.__getitem__, conns))
            extra = list(compress(range(n), map(operator.ne, at, range(n))))
            grouped: dict[int, list[int]] = {}
            for i in extra:
                j = at[i]
                g = grouped.get(j)
                if g is None:
                    grouped[j] = [j, i]
                else:
                    g.append(i)
            alone = [True] * n
            for i in extra:
                alone[i] = False
            for j in grouped:
                alone[j] = False
            pair_a: list[int] = []
            pair_b: list[int] = []
            groups = []
            for j, g in grouped.items():
                if len(g) == 2 and not same_way(keys[j], keys[g[1]]):
                    pair_a.append(j)
                    pair_b.append(g[1])
                else:
                    conn = conns[j]
                    groups.append((tuple(g), tuple(lower_to_higher(keys[i], conn) for i in g)))
            members: list[Members] = list(compress(range(n), alone))
            members += zip(pair_a, pair_b, strict=True)
            members += (g for g, _ways in groups)
            plan = _Plan(table.raw_keys, alone, pair_a, pair_b, groups, members)
        self._plan = plan
        return plan

    def merge(
        self, table: FlowTable, moved_bytes: list[int | None], moved_packets: list[int | None]
    ) -> Connections:
        plan = self.plan(table)
        alone = plan.alone
        if alone is None:  # every connection is one entry: the columns as they are
            return Connections(moved_bytes, moved_packets, table.nbytes, table.packets, plan.members)
        nbytes, packets = table.nbytes, table.packets
        mb = list(compress(moved_bytes, alone))
        mp = list(compress(moved_packets, alone))
        nb = list(compress(nbytes, alone))
        np_ = list(compress(packets, alone))
        a, b = plan.pair_a, plan.pair_b
        if a:
            for out, col in ((nb, nbytes), (np_, packets)):
                out += map(operator.add, map(col.__getitem__, a), map(col.__getitem__, b))
            for out2, col2 in ((mb, moved_bytes), (mp, moved_packets)):
                xa, xb = list(map(col2.__getitem__, a)), list(map(col2.__getitem__, b))
                if None in xa or None in xb:
                    out2 += map(_plus, xa, xb)
                else:
                    out2 += map(operator.add, xa, xb)
        for g, ways in plan.groups:
            cb = cp = 0
            cmb: int | None = None
            cmp: int | None = None
            for way in (True, False):
                ix = [i for i, w in zip(g, ways, strict=True) if w is way]
                if ix:
                    cb += max(nbytes[i] for i in ix)
                    cp += max(packets[i] for i in ix)
                    cmb = _plus(cmb, _largest([moved_bytes[i] for i in ix]))
                    cmp = _plus(cmp, _largest([moved_packets[i] for i in ix]))
            mb.append(cmb)
            mp.append(cmp)
            nb.append(cb)
            np_.append(cp)
        return Connections(mb, mp, nb, np_, plan.members)


DIRECTION_AT = 42  # FLOW_KEY: src 16, dst 16, ifindex 4, ports 4, proto, family, direction


def first_entry(table: FlowTable, members: Members) -> int:
    """The entry whose way is the connection's forward one (see the module's docstring),
    seen first on that way."""
    if isinstance(members, int):
        return members
    keys, first = table.keys, table.first

    def rank(i: int) -> tuple[bool, int, bool, int, int]:
        sport, dport = _PORTS.unpack_from(keys[i], 36)
        from_server = sport < EPHEMERAL <= dport
        towards_lower = dport < sport or (dport == sport and lower_to_higher(keys[i], conn_key(keys[i])))
        # Within one jiffy a packet crossing the host is seen arriving before leaving: the
        # arriving hook first (direction byte 0), not the map's order, so one connection
        # gets the same record (and owner, and fold) at every tick.
        return (from_server, first[i], not towards_lower, keys[i][DIRECTION_AT] & 1, i)

    return min(members, key=rank)


def same_way(a: bytes, b: bytes) -> bool:
    """Whether two entries of one connection carry the same way (same source end)."""
    return a[0:16] == b[0:16] and a[36:38] == b[36:38]
