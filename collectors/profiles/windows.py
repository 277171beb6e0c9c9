"""Sliding windows of BPF sample counts (the last 10 s, the last 60 s) and their summaries.

Each drain is added once and subtracted once as it ages out; a tag group keeps its
ranking until its counts change, so a summary costs the groups that changed. The result
equals `aggregate.summarize` of the window's stacks (the tests compare the two).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

from .aggregate import GROUP_KEYS, MAX_TOP_GROUPS, StackKey, project, round_robin, stack_order, top_functions
from .model import FunctionStat, Profile, StackSample, TagGroup, Tags

MAX_TAG_SETS = 4096  # tag set -> group projections remembered before that memo starts over


class _Group:
    """The stacks of one tag group in one window, and what was derived from them."""

    __slots__ = ("_ranked", "_top", "members", "samples")

    def __init__(self) -> None:
        self.members: dict[StackKey, int] = {}
        self.samples = 0
        self._ranked: list[StackSample] | None = None
        self._top: tuple[FunctionStat, ...] | None = None

    def change(self, key: StackKey, n: int) -> None:
        left = self.members.get(key, 0) + n
        if left:
            self.members[key] = left
        else:
            self.members.pop(key, None)
        self.samples += n
        self._ranked = self._top = None

    def ranked(self) -> list[StackSample]:
        """Its stacks, heaviest first."""
        if self._ranked is None:
            self._ranked = sorted(
                (StackSample(frames, n, tags) for (tags, frames), n in self.members.items()), key=stack_order
            )
        return self._ranked

    def top(self, n: int) -> tuple[FunctionStat, ...]:
        if self._top is None:
            self._top = tuple(top_functions(self.ranked(), n))
        return self._top


class SlidingWindows:
    """Sample counts over the last `spans` seconds (e.g. 10 and 60). Memory is bounded
    by the longest span times the distinct stacks."""

    def __init__(
        self, spans: Iterable[float], *, group_keys: tuple[str, ...] = GROUP_KEYS, top_n: int = 5
    ) -> None:
        self.spans = tuple(sorted(spans))
        self.group_keys = group_keys
        self.top_n = top_n
        self._in: dict[float, collections.deque[tuple[float, dict[StackKey, int]]]] = {
            s: collections.deque() for s in self.spans
        }
        self._groups: dict[float, dict[Tags, _Group]] = {s: {} for s in self.spans}
        self._total = dict.fromkeys(self.spans, 0)
        self._last: dict[
            float, tuple[int, tuple[TagGroup, ...], tuple[StackSample, ...]]
        ] = {}  # span -> (max_stacks, groups, stacks) of its last profile
        self._projected: dict[Tags, Tags] = {}

    def add(self, when: float, counts: Mapping[StackKey, int]) -> None:
        if counts:
            bucket = {k: n for k, n in counts.items() if n}
            for span in self.spans:
                self._in[span].append((when, bucket))
                self._apply(span, bucket, 1)
        self._expire(when)

    def _apply(self, span: float, bucket: dict[StackKey, int], sign: int) -> None:
        groups, projected = self._groups[span], self._projected
        for key, n in bucket.items():
            g_tags = projected.get(key[0])
            if g_tags is None:
                if len(projected) >= MAX_TAG_SETS:
                    projected.clear()
                g_tags = projected[key[0]] = project(key[0], self.group_keys)
            g = groups.get(g_tags)
            if g is None:
                g = groups[g_tags] = _Group()
            g.change(key, sign * n)
            if not g.members:
                del groups[g_tags]
            self._total[span] += sign * n
        self._last.pop(span, None)

    def _expire(self, now: float) -> None:
        for span in self.spans:
            q = self._in[span]
            while q and q[0][0] <= now - span:
                self._apply(span, q.popleft()[1], -1)

    def oldest(self, now: float, span: float) -> float:
        """The oldest drain time in the last `span` seconds (`now` when there is none)."""
        self._expire(now)
        q = self._in[span]
        return q[0][0] if q else now

    def counts(self, now: float, span: float) -> tuple[dict[StackKey, int], float]:
        """Summed counts of the last `span` seconds (one of `spans`), and the oldest
        drain time in them (`now` when there is none)."""
        oldest = self.oldest(now, span)
        return {k: n for g in self._groups[span].values() for k, n in g.members.items()}, oldest

    def profile(self, name: str, start: float, now: float, span: float, *, max_stacks: int) -> Profile:
        """The last `span` seconds as `aggregate.summarize` would give them (source "bpf",
        ending `now`)."""
        self._expire(now)
        groups, total = self._groups[span], self._total[span]
        last = self._last.get(span)
        if last is None or last[0] != max_stacks:
            order = sorted(groups, key=lambda t: (-groups[t].samples, t))
            tag_groups = tuple(
                TagGroup(
                    t,
                    groups[t].samples,
                    groups[t].samples / total if total else 0.0,
                    groups[t].top(self.top_n) if i < MAX_TOP_GROUPS else (),
                )
                for i, t in enumerate(order)
            )
            kept = tuple(round_robin([g.ranked() for g in groups.values()], max_stacks))
            last = self._last[span] = (max_stacks, tag_groups, kept)
        _, tag_groups, kept = last
        return Profile(
            name=name,
            source="bpf",
            start=start,
            end=now,
            total_samples=total,
            stacks=kept,
            groups=tag_groups,
            omitted_samples=total - sum(s.count for s in kept),
        )
