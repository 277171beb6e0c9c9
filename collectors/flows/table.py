"""One tick's copy of the kernel flow map, by column.

Every flow in the map is worked on every second, and at that cadence the process's
memory is cold each time: a Python loop over a thousand flows costs microseconds per
flow. So the whole-map work (unpacking, deltas, totals, ranking) runs over columns
with C loops (struct, map, zip, sort), and Python code touches only the flows shown
and the few that need a decision (new, re-created, idle).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat

from .layout import FLOW_KEY_BYTES

_FIRST = operator.itemgetter(0)

# one flow's counters as the map holds them: (packets, bytes, first, last), times in jiffies
Counters = tuple[int, int, int, int]


@dataclass
class FlowTable:
    keys: list[bytes]  # raw flow_key bytes (see layout.decode_key)
    packets: list[int]
    nbytes: list[int]
    first: list[int]  # jiffies (collectors/kclock.py)
    last: list[int]
    raw_keys: bytes = b""  # the keys as read: equal raw_keys means same flows, same order
    _position: dict[bytes, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_raw(cls, kraw: bytes, vraw: bytes) -> FlowTable:
        """From the batch read's buffers (flow_key / flow_val arrays, same length)."""
        vals = memoryview(vraw).cast("Q")
        keys = list(map(_FIRST, FLOW_KEY_BYTES.iter_unpack(kraw)))
        return cls(
            keys, vals[0::4].tolist(), vals[1::4].tolist(), vals[2::4].tolist(), vals[3::4].tolist(), kraw
        )

    @classmethod
    def from_rows(cls, rows: Mapping[bytes, Counters] | Iterable[tuple[bytes, Counters]]) -> FlowTable:
        items = list(rows.items() if isinstance(rows, Mapping) else rows)
        if not items:
            return cls([], [], [], [], [], b"")
        keys, vals = zip(*items, strict=True)
        packets, nbytes, first, last = zip(*vals, strict=True)
        return cls(list(keys), list(packets), list(nbytes), list(first), list(last), b"".join(keys))

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self) -> dict[bytes, Counters]:
        return dict(
            zip(self.keys, zip(self.packets, self.nbytes, self.first, self.last, strict=True), strict=True)
        )

    def position(self) -> dict[bytes, int]:
        """key -> its index (made once, when another table needs to line up with this one)."""
        if self._position is None:
            self._position = dict(zip(self.keys, range(len(self.keys)), strict=True))
        return self._position

    def idle_since(self, limit: int) -> list[bytes]:
        """Keys of the flows whose last packet came before `limit` (jiffies)."""
        if not self.last or min(self.last) >= limit:
            return []
        return list(compress(self.keys, map(operator.lt, self.last, repeat(limit))))

    def without(self, gone: Iterable[bytes]) -> FlowTable:
        drop = set(gone)
        rows = self.rows()
        return FlowTable.from_rows((k, v) for k, v in rows.items() if k not in drop)
