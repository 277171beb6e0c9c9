"""The sliding windows kept up to date drain by drain give exactly the summary built
from scratch over the same seconds, however drains come, go and age out."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from ebpftop.collectors.profiles import aggregate as a
from ebpftop.collectors.profiles.model import StackSample, make_tags
from ebpftop.collectors.profiles.windows import SlidingWindows

SPANS = (10.0, 60.0)


def from_scratch(history, now, span, max_stacks):
    """summarize() of every drain in (now - span, now], as the collector did before."""
    counts = collections.Counter()
    for when, bucket in history:
        if now - span < when <= now:
            counts.update(bucket)
    return a.summarize("w", "bpf", 0.0, now, a.stacks_from_counts(counts), max_stacks=max_stacks, merged=True)


def key(pid, service, frames):
    tags = {"pid": str(pid), "comm": f"c{pid}", "source": "bpf"}
    if service:
        tags["service"] = service
    return make_tags(tags), tuple(frames.split(";"))


# A stack of a process: pids share services (groups of several pids only by pid), frames
# share functions (so top functions add up across stacks and recursion shows).
_key = st.builds(
    key,
    st.integers(1, 12),
    st.sampled_from(["", "api", "db"]),
    st.sampled_from(["main", "main;a", "main;a;b", "main;b;a", "main;a;a", "main;c;b", "x;y"]),
)
# Seconds between drains (0: two drains at one time; 70: everything ages out) and the
# drain: which stacks, how many samples; an empty drain is a second with no samples.
_drain = st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.0, 3.0, 11.0, 70.0]),
    st.dictionaries(_key, st.integers(1, 50), max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_drain, min_size=1, max_size=90), st.sampled_from([1, 3, 100]), st.data())
def test_windows_equal_a_summary_from_scratch(drains, max_stacks, data):
    w = SlidingWindows(SPANS)
    history = []
    now = 1000.0
    for gap, bucket in drains:
        now += gap
        w.add(now, bucket)
        history.append((now, bucket))
        # not every second is summarised (the minute every 5 s): skip some, at random
        for span in SPANS:
            if data.draw(st.booleans(), label="summarise"):
                got = w.profile("w", 0.0, now, span, max_stacks=max_stacks)
                assert got == from_scratch(history, now, span, max_stacks)
    # time passes with no drains: both windows empty out
    for later in (now + 10.0, now + 60.0):
        for span in SPANS:
            assert w.profile("w", 0.0, later, span, max_stacks=max_stacks) == from_scratch(
                history, later, span, max_stacks
            )
    assert all(not g for g in w._groups.values()) and all(t == 0 for t in w._total.values())


def test_an_unchanged_window_reuses_its_groups_and_stacks():
    w = SlidingWindows(SPANS)
    k = key(1, "api", "main;a")
    w.add(1.0, {k: 3})
    first = w.profile("w", 0.0, 1.5, 10.0, max_stacks=10)
    again = w.profile("w", 0.0, 1.8, 10.0, max_stacks=10)
    assert again.end == 1.8 and again.groups is first.groups and again.stacks is first.stacks
    w.add(2.0, {k: 1})
    moved = w.profile("w", 0.0, 2.0, 10.0, max_stacks=10)
    assert moved.total_samples == 4 and moved.stacks[0] == StackSample(("main", "a"), 4, k[0])


def test_a_process_gone_leaves_no_group_once_its_samples_age_out():
    w = SlidingWindows(SPANS)
    gone, stays = key(1, "api", "main"), key(2, "db", "main")
    w.add(1.0, {gone: 5, stays: 1})
    for t in range(2, 13):
        w.add(float(t), {stays: 1})
    short = w.profile("w", 0.0, 12.0, 10.0, max_stacks=10)
    assert [g.tags for g in short.groups] == [make_tags({"pid": "2", "service": "db"})]
    assert len(w._groups[60.0]) == 2  # still inside the minute


def rank_everything(by, limit):
    """The round-robin pick as first written: every stack ranked, then cut."""
    order = lambda s: (-s.count, s.frames, s.tags)  # noqa: E731
    ranked = []
    for members in by.values():
        ranked.extend(enumerate(sorted(members, key=order)))
    ranked.sort(key=lambda rs: (rs[0], order(rs[1])))
    return sorted((s for _, s in ranked[:limit]), key=order)


_sample = st.builds(lambda k, n: StackSample(k[1], n, k[0]), _key, st.integers(1, 5))


@settings(max_examples=300, deadline=None)
@given(st.lists(_sample, max_size=40, unique_by=lambda s: (s.tags, s.frames)), st.integers(0, 45))
def test_round_robin_equals_ranking_every_stack(stacks, limit):
    by = a.split(stacks, a.GROUP_KEYS)
    want = rank_everything(by, limit)
    assert a.heaviest(by, limit) == want
    assert a.round_robin([sorted(m, key=a.stack_order) for m in by.values()], limit) == want
