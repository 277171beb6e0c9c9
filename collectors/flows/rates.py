"""Per-tick rate maths over the kernel's cumulative flow counters.

Pure functions: the collector hands in two samples, these say what moved. A rate
needs two samples of the same flow; a flow born since the last sample moved all
it has; a flow whose entry was evicted and re-created (its first-seen changed)
starts again from zero. Anything else is unknown (None), never a made-up 0.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import lt, ne, sub

from .table import Counters, FlowTable


def moved(
    prev: FlowTable | None, cur: FlowTable, prev_t: int | None, now_t: int
) -> tuple[list[int | None], list[int | None]]:
    """(bytes, packets) each flow of `cur` moved since `prev`, by index; None where not
    known. prev_t and now_t: when the two were read, on the map's clock (first seen). The
    common case -- the same flow, counters grown -- is worked out by column in C; only the
    others go through the rules one by one."""
    n = len(cur)
    if prev is None or prev_t is None or now_t <= prev_t:
        return [None] * n, [None] * n
    if cur.raw_keys and cur.raw_keys == prev.raw_keys:  # same flows in the same order
        pp, pb, pf = prev.packets, prev.nbytes, prev.first
    else:  # line prev up with cur; a flow prev lacks gets the sentinel row (first -1)
        at = list(map(prev.position().get, cur.keys, repeat(len(prev))))
        pp = list(map([*prev.packets, 0].__getitem__, at))
        pb = list(map([*prev.nbytes, 0].__getitem__, at))
        pf = list(map([*prev.first, -1].__getitem__, at))
    dp = list(map(sub, cur.packets, pp))
    db = list(map(sub, cur.nbytes, pb))
    odd: set[int] = set()
    if cur.first != pf:
        odd.update(compress(range(n), map(ne, cur.first, pf)))
    if n and min(db) < 0:
        odd.update(compress(range(n), map(lt, db, repeat(0))))
    if n and min(dp) < 0:
        odd.update(compress(range(n), map(lt, dp, repeat(0))))
    for i in odd:
        if cur.first[i] >= prev_t:
            # Born (or re-born after an eviction) since the last sample: all of it is new.
            db[i], dp[i] = cur.nbytes[i], cur.packets[i]
        else:
            db[i] = dp[i] = None
    return db, dp


def flow_rate(
    prev: Counters | None, cur: Counters, prev_ns: int | None, now_ns: int
) -> tuple[float | None, float | None]:
    """(bytes/s, packets/s) of one flow between two samples."""
    before = FlowTable.from_rows({b"f": prev} if prev is not None else {})
    db, dp = moved(before, FlowTable.from_rows({b"f": cur}), prev_ns, now_ns)
    dt = (now_ns - prev_ns) / 1e9 if prev_ns is not None and now_ns > prev_ns else None
    return per_second(db[0], dt), per_second(dp[0], dt)


def per_second(amount: int | None, dt: float | None) -> float | None:
    return None if amount is None or dt is None else amount / dt


def total_rate(
    db: list[int | None], dp: list[int | None], dt: float | None
) -> tuple[float | None, float | None]:
    """Sum of the known rates; None before a second sample (dt None) or when no flow
    has a known rate yet (zero flows after two samples is a true 0)."""
    if dt is None:
        return None, None
    if db and db.count(None) == len(db):
        return None, None
    # moved() gives None to the bytes and the packets of a flow together, so leaving out
    # the falsy ones (None and 0) of each column sums the known ones, in C
    return sum(filter(None, db)) / dt, sum(filter(None, dp)) / dt


def evictions(inserts: int, live: int, deleted: int, previous: int = 0) -> int:
    """Entries the LRU pushed out: every insert is either still live, deleted by us,
    or evicted. The kernel's insert counter and the map are read a moment apart, so
    the figure never goes down (a transient low reading is not a recovery)."""
    return max(previous, inserts - live - deleted, 0)
