"""Per-tick rate maths over the kernel's cumulative flow counters.

Pure functions: the collector hands in two samples, these say what moved. A rate
needs two samples of the same flow; a flow born since the last sample moved all
it has; a flow whose entry was evicted and re-created (its first-seen changed)
starts again from zero. Anything else is unknown (None), never a made-up 0.
"""

from __future__ import annotations

from typing import Mapping

# key -> (packets, bytes, first_ns, last_ns)
Counters = tuple[int, int, int, int]


def flow_rate(
    prev: Counters | None, cur: Counters, prev_ns: int | None, now_ns: int
) -> tuple[float | None, float | None]:
    """(bytes/s, packets/s) of one flow between two samples."""
    return all_rates({b"": prev} if prev is not None else None, {b"": cur}, prev_ns, now_ns)[b""]


def all_rates(
    prev: Mapping[bytes, Counters] | None,
    cur: Mapping[bytes, Counters],
    prev_ns: int | None,
    now_ns: int,
) -> dict[bytes, tuple[float | None, float | None]]:
    """flow_rate of every flow in `cur`; the rules live here, in one loop, because this
    runs for every flow in the map every tick."""
    if prev_ns is None or now_ns <= prev_ns:
        return dict.fromkeys(cur, (None, None))
    dt = (now_ns - prev_ns) / 1e9
    get = (prev or {}).get
    out = {}
    for k, v in cur.items():
        p = get(k)
        packets, nbytes, first_ns, _ = v
        if p is not None and p[2] == first_ns and packets >= p[0] and nbytes >= p[1]:
            out[k] = ((nbytes - p[1]) / dt, (packets - p[0]) / dt)
        elif first_ns >= prev_ns:
            # Born (or re-born after an eviction) since the last sample: all of it is new.
            out[k] = (nbytes / dt, packets / dt)
        else:
            out[k] = (None, None)
    return out


def total_rate(
    rates: Mapping[bytes, tuple[float | None, float | None]], have_previous: bool
) -> tuple[float | None, float | None]:
    """Sum of the known rates; None before a second sample or when no flow has a
    known rate yet (zero flows after two samples is a true 0)."""
    if not have_previous:
        return None, None
    known = [r for r in rates.values() if r[0] is not None]
    if not known and rates:
        return None, None
    bps, pps = zip(*known) if known else ((), ())
    return sum(bps), sum(pps)


def evictions(inserts: int, live: int, deleted: int, previous: int = 0) -> int:
    """Entries the LRU pushed out: every insert is either still live, deleted by us,
    or evicted. The kernel's insert counter and the map are read a moment apart, so
    the figure never goes down (a transient low reading is not a recovery)."""
    return max(previous, inserts - live - deleted, 0)
