"""One profile over a fixed span, read once at the end: `ebpftop profile`.

The live collector drains every second for its sliding windows; a one-shot profile
does no work while it samples (one sleep), like bcc's `profile` tool. The kernel counts
per (process, stacks), so the counts map needs room for the distinct keys of the whole
span rather than a few seconds of samples: bcc's sizes (10240 keys, 16384 stacks).
Samples with no room, or whose stack was not kept, are counted and reported as lost.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .aggregate import StackKey, stacks_from_counts, summarize
from .model import Profile, WithSource
from .sampler import MAX_KEYS, Sampler
from .tags import TagCache

STACK_SLOTS = 16384  # bcc profile's default stack storage


@dataclass(frozen=True)
class OneShot:
    profile: Profile
    hz: int
    seconds: float  # sampled span, from attach to the read
    lost: tuple[int, int]  # (no room in the counts map, stack not kept)
    interrupted: bool  # stopped early (Ctrl-C or a signal); the profile covers what was sampled


def sample(
    hz: int,
    seconds: float,
    *,
    stop: threading.Event | None = None,
    max_stacks: int = 400,
    top_n: int = 5,
    sampler: Sampler | None = None,
    tags: TagCache | None = None,
    clock: Callable[[], float] = time.time,
) -> OneShot:
    """Sample every CPU at `hz` for `seconds` (or until `stop` is set), then read,
    name and tag everything once. Raises SamplerUnavailable when BPF cannot run."""
    sampler = (
        sampler
        if sampler is not None
        else Sampler(hz, max_keys=MAX_KEYS, stack_slots=STACK_SLOTS, skip_tgid=os.getpid())
    )
    tags = tags if tags is not None else TagCache()
    stop = stop if stop is not None else threading.Event()
    sampler.start()
    try:
        start = clock()
        t0 = time.monotonic()
        interrupted = False
        try:
            interrupted = stop.wait(seconds)
        except KeyboardInterrupt:
            interrupted = True
        span = time.monotonic() - t0
        end = clock()
        raw = sampler.drain()
        lost = sampler.lost()
    finally:
        sampler.close()
    counts: dict[StackKey, int] = collections.defaultdict(int)
    tagged = WithSource("bpf")
    for r in raw:
        counts[(tagged(tags.get(r.tgid, r.comm)), r.frames)] += r.count
    prof = summarize(
        f"bpf {span:.0f}s",
        "bpf",
        start,
        end,
        stacks_from_counts(counts),
        max_stacks=max_stacks,
        top_n=top_n,
        merged=True,
    )
    return OneShot(prof, hz, span, lost, interrupted)
