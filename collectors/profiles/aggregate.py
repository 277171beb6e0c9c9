"""The pure logic behind the profiles pane and the headless snapshot.

Grouping by tag set, top functions (self and total), a folded-stack tree laid out to
fit a terminal, a canary-vs-stable diff of top functions, and the trace_id → profile
selection. No I/O here: everything takes stacks
and returns plain values, so the pane, the JSON snapshot and the tests share it.
"""

from __future__ import annotations

import collections
import heapq
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import FunctionStat, Profile, StackSample, TagGroup, Tags, tag

# The tag keys the pane groups by first (the "tag sets").
GROUP_KEYS = ("service", "env", "version", "trace_id", "pid")

StackKey = tuple[Tags, tuple[str, ...]]


def stacks_from_counts(counts: Mapping[StackKey, int]) -> list[StackSample]:
    return [StackSample(frames, n, tags) for (tags, frames), n in counts.items() if n > 0]


def summarize(
    name: str,
    source: str,
    start: float,
    end: float,
    stacks: Iterable[StackSample],
    *,
    max_stacks: int = 400,
    group_keys: tuple[str, ...] = GROUP_KEYS,
    top_n: int = 5,
    merged: bool = False,
) -> Profile:
    """A Profile: totals, groups with their top frames, and the heaviest stacks.

    Stacks beyond `max_stacks` are left out of the listing (their samples are counted
    in `omitted_samples`) so one snapshot stays small; totals and groups use them all.
    `merged=True` says no two stacks share tags and frames (they come from one dict).
    """
    stacks = list(stacks) if merged else merge(stacks)
    total = sum(s.count for s in stacks)
    ns = [s.cpu_ns for s in stacks if s.cpu_ns is not None]
    by = split(stacks, group_keys)
    groups = group_by(stacks, group_keys, top_n=top_n, by=by)
    kept = tuple(heaviest(by, max_stacks))
    return Profile(
        name=name,
        source=source,
        start=start,
        end=end,
        total_samples=total,
        stacks=kept,
        groups=tuple(groups),
        omitted_samples=total - sum(s.count for s in kept),
        total_cpu_ns=sum(ns) if ns else None,
    )


def stack_order(s: StackSample) -> tuple[int, tuple[str, ...], Tags]:
    """Heaviest first; ties broken by frames, then tags, so every listing is stable."""
    return (-s.count, s.frames, s.tags)


def heaviest(by: dict[Tags, list[StackSample]], limit: int) -> list[StackSample]:
    """The heaviest stacks, taken round-robin over the tag groups (every group's first,
    then every group's second...), so a small group selected in the pane still has its
    stacks when a big one dominates. Returned heaviest first."""
    for members in by.values():
        members.sort(key=stack_order)
    return round_robin(list(by.values()), limit)


def round_robin(ranked: list[list[StackSample]], limit: int) -> list[StackSample]:
    """`heaviest` of groups whose stacks are already sorted by stack_order: one rank at a
    time (every group's first, then every second...), so only the stacks kept are
    compared, not every stack of every group."""
    out: list[StackSample] = []
    rank = 0
    ranked = [r for r in ranked if r]
    while ranked and len(out) < limit:
        layer = sorted((r[rank] for r in ranked), key=stack_order)
        out.extend(layer[: limit - len(out)])
        rank += 1
        ranked = [r for r in ranked if len(r) > rank]
    out.sort(key=stack_order)
    return out


def merge(stacks: Iterable[StackSample]) -> list[StackSample]:
    """Add up samples with the same tags and frames."""
    counts: dict[StackKey, int] = {}
    cpu: dict[StackKey, int] = {}
    for s in stacks:
        key = (s.tags, s.frames)
        counts[key] = counts.get(key, 0) + s.count
        if s.cpu_ns is not None:
            cpu[key] = cpu.get(key, 0) + s.cpu_ns
    return [StackSample(frames, n, tags, cpu.get((tags, frames))) for (tags, frames), n in counts.items()]


# --- grouping and top functions -------------------------------------------------------


def project(tags: Tags, keys: Iterable[str]) -> Tags:
    """The part of a tag set named by `keys` (missing keys are left out)."""
    wanted = set(keys)
    return tuple((k, v) for k, v in tags if k in wanted)


def split(stacks: Iterable[StackSample], keys: Iterable[str]) -> dict[Tags, list[StackSample]]:
    """Stacks by their tag set restricted to `keys`."""
    keys = tuple(keys)
    seen: dict[Tags, Tags] = {}  # many stacks share one tag set: project each set once
    by: dict[Tags, list[StackSample]] = collections.defaultdict(list)
    for s in stacks:
        p = seen.get(s.tags)
        if p is None:
            p = seen[s.tags] = project(s.tags, keys)
        by[p].append(s)
    return by


MAX_TOP_GROUPS = 50  # groups that get their top frames computed; the rest list samples only


def group_by(
    stacks: Iterable[StackSample],
    keys: Iterable[str] = GROUP_KEYS,
    *,
    top_n: int = 5,
    by: dict[Tags, list[StackSample]] | None = None,
) -> list[TagGroup]:
    """Samples per tag set (restricted to `keys`), heaviest first, with top frames for
    the heaviest MAX_TOP_GROUPS groups."""
    by = split(stacks, keys) if by is None else by
    sums = {tags: sum(s.count for s in members) for tags, members in by.items()}
    total = sum(sums.values())
    order = sorted(by, key=lambda t: (-sums[t], t))
    return [
        TagGroup(
            t,
            sums[t],
            sums[t] / total if total else 0.0,
            tuple(top_functions(by[t], top_n)) if i < MAX_TOP_GROUPS else (),
        )
        for i, t in enumerate(order)
    ]


def top_functions(
    stacks: Iterable[StackSample], n: int | None = None, *, by: str = "self"
) -> list[FunctionStat]:
    """Functions by self samples (leaf) or total samples (anywhere on the stack).

    A recursive function counts once per stack in `total`, as pprof's `cum` does.
    """
    if by not in ("self", "total"):
        raise ValueError(f"by must be 'self' or 'total', not {by!r}")
    self_c: dict[str, int] = {}
    total_c: dict[str, int] = {}
    for s in stacks:
        frames, count = s.frames, s.count
        if not frames:
            continue
        leaf = frames[-1]
        self_c[leaf] = self_c.get(leaf, 0) + count
        for name in set(frames):
            total_c[name] = total_c.get(name, 0) + count
    # Ranked on (name, total) pairs: only the top n become FunctionStats (this runs
    # for every tag group at every refresh).
    if by == "self":
        key = lambda kv: (-self_c.get(kv[0], 0), -kv[1], kv[0])  # noqa: E731
    else:
        key = lambda kv: (-kv[1], -self_c.get(kv[0], 0), kv[0])  # noqa: E731
    ranked = sorted(total_c.items(), key=key) if n is None else heapq.nsmallest(n, total_c.items(), key=key)
    return [FunctionStat(name, self_c.get(name, 0), total) for name, total in ranked]


# --- filters and the trace_id link ----------------------------------------------------


def filter_stacks(stacks: Iterable[StackSample], **want: str) -> list[StackSample]:
    """Stacks whose tags hold every given key=value (e.g. service="checkout")."""
    return [s for s in stacks if all(tag(s.tags, k) == v for k, v in want.items())]


@dataclass(frozen=True)
class Selection:
    stacks: tuple[StackSample, ...]
    how: str  # one line saying what was selected and why, for the pane's title
    matched_trace: bool


def select_for_trace(
    profiles: Iterable[Profile], trace_id: str, service: str | None = None, at: float | None = None
) -> Selection:
    """The samples behind a latency exemplar's trace_id (recorded at `at`, when known).

    pprof samples carrying the trace_id win; when none does, fall back to every sample
    of `service` (the canary's). Either way `how` says what is shown, from which
    profiles, and, for a fallback, why the trace found nothing.
    """
    profiles = _without_overlap(profiles)
    hits = [s for p in profiles for s in p.stacks if tag(s.tags, "trace_id") == trace_id]
    if hits:
        n = sum(s.count for s in hits)
        where = [p for p in profiles if any(tag(s.tags, "trace_id") == trace_id for s in p.stacks)]
        return Selection(
            tuple(merge(hits)),
            f"trace_id={trace_id}: {n} samples carry it ({'; '.join(describe(p) for p in where)})",
            True,
        )
    why = f"no sample carries trace_id={trace_id} {_why_missing(profiles, trace_id, at)}"
    if service:
        svc = [s for p in profiles for s in p.stacks if tag(s.tags, "service") == service]
        if not svc:
            return Selection((), f"{why}; no sample of service={service} either: nothing to show", False)
        n = sum(s.count for s in svc)
        return Selection(tuple(merge(svc)), f"{why}; showing service={service} ({n} samples)", False)
    return Selection((), why, False)


def describe(p: Profile) -> str:
    """A profile in a few words: its source, whose samples (service and track or
    version, when the samples say) and the wall-clock span it covers."""
    weights: dict[str, int] = collections.defaultdict(int)
    for s in p.stacks:
        service = tag(s.tags, "service")
        if service:
            variant = tag(s.tags, "track") or tag(s.tags, "version")
            weights[f"{service} {variant}" if variant else service] += s.count
    who = f" of {max(weights, key=lambda k: (weights[k], k))}" if weights else ""
    source = f"BPF{who}" if p.source == "bpf" else f"pprof{who} at {p.source}"
    span = f"{_clock(p.start)}-{_clock(p.end)}" if p.end > p.start else _clock(p.end)
    return f"{source}, {span}"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _why_missing(profiles: list[Profile], trace_id: str, at: float | None) -> str:
    """Why a trace id found no stack: what was searched, and what that says."""
    pprof = [p for p in profiles if p.source != "bpf"]
    if not pprof:
        return "(no pprof profile: only pprof samples carry trace ids; give --pprof URL)"
    searched = "; ".join(describe(p) for p in pprof)
    counted = sum(g.samples for p in pprof for g in p.groups if tag(g.tags, "trace_id") == trace_id)
    if counted:
        return f"among the stacks listed ({searched}): its {counted} samples are in lighter stacks left out"
    start, end = min(p.start for p in pprof), max(p.end for p in pprof)
    if at is not None and at > end:
        reason = f"the request ({_clock(at)}) is newer than the last profile; its samples come with the next"
    elif at is not None and at < start:
        reason = f"the request ({_clock(at)}) is older than the profiles kept"
    else:
        reason = "no CPU sample (the request waited, or was too brief)"
    return f"({searched}): {reason}"


def _without_overlap(profiles: Iterable[Profile]) -> list[Profile]:
    """BPF windows nest (10 s inside 60 s): keep only the longest so nothing counts twice."""
    profiles = list(profiles)
    bpf = [p for p in profiles if p.source == "bpf" and not p.name.startswith("capture")]
    if len(bpf) < 2:
        return profiles
    longest = max(bpf, key=lambda p: p.end - p.start)
    drop = {id(p) for p in bpf if p is not longest}
    return [p for p in profiles if id(p) not in drop]


# --- canary vs stable -----------------------------------------------------------------


@dataclass(frozen=True)
class FunctionDiff:
    name: str
    canary_share: float  # of canary samples, 0..1
    stable_share: float
    delta: float  # canary_share - stable_share: positive = hotter in the canary


def diff_top(
    canary: Iterable[StackSample], stable: Iterable[StackSample], n: int = 10, *, by: str = "self"
) -> list[FunctionDiff]:
    """Top functions of canary and stable side by side, largest change first.

    Shares, not counts, so a canary taking 10% of the traffic compares fairly.
    """
    canary, stable = list(canary), list(stable)
    ct, st = sum(s.count for s in canary), sum(s.count for s in stable)

    def shares(stacks: list[StackSample], total: int) -> dict[str, float]:
        if not total:
            return {}
        stats = top_functions(stacks, by=by)
        return {f.name: (f.self_samples if by == "self" else f.total_samples) / total for f in stats}

    cs, ss = shares(canary, ct), shares(stable, st)
    rows = [
        FunctionDiff(name, cs.get(name, 0.0), ss.get(name, 0.0), cs.get(name, 0.0) - ss.get(name, 0.0))
        for name in set(cs) | set(ss)
    ]
    rows.sort(key=lambda d: (-abs(d.delta), -max(d.canary_share, d.stable_share), d.name))
    return rows[:n]


# --- folded stacks and the flame view -------------------------------------------------


def folded(stacks: Iterable[StackSample]) -> list[str]:
    """Brendan Gregg's folded format, "root;child;leaf count", heaviest first."""
    merged: dict[tuple[str, ...], int] = collections.defaultdict(int)
    for s in stacks:
        merged[s.frames] += s.count
    return [f"{';'.join(f)} {n}" for f, n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass
class FlameNode:
    name: str
    total: int = 0
    self: int = 0
    children: dict[str, FlameNode] = field(default_factory=dict)

    def child(self, name: str) -> FlameNode:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = FlameNode(name)
        return node


def flame_tree(stacks: Iterable[StackSample], root: str = "all") -> FlameNode:
    tree = FlameNode(root)
    for s in stacks:
        tree.total += s.count
        node = tree
        for name in s.frames:
            node = node.child(name)
            node.total += s.count
        node.self += s.count
    return tree


@dataclass(frozen=True)
class FlameCell:
    col: int
    width: int
    name: str
    samples: int


def flame_rows(tree: FlameNode, width: int, height: int) -> list[list[FlameCell]]:
    """Lay the tree out in at most `height` rows of `width` columns, root row first.

    A node's width is its share of the root; nodes narrower than one column are
    dropped (with everything above them). Edges come from cumulative sums so the
    children of a node never spill past it, whatever the rounding.
    """
    if width <= 0 or height <= 0 or tree.total <= 0:
        return []
    rows: list[list[FlameCell]] = [[FlameCell(0, width, tree.name, tree.total)]]
    level = [(tree, 0, width)]
    while level and len(rows) < height:
        row: list[FlameCell] = []
        nxt = []
        for node, col, w in level:
            acc = 0
            for child in sorted(node.children.values(), key=lambda c: (-c.total, c.name)):
                a = col + acc * w // node.total
                acc += child.total
                b = col + acc * w // node.total
                if b - a >= 1:
                    row.append(FlameCell(a, b - a, child.name, child.total))
                    nxt.append((child, a, b - a))
        if not row:
            break
        rows.append(row)
        level = nxt
    return rows
