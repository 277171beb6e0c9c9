"""The pure logic behind the profiles pane: windows, groups, top functions, flame layout,
canary-vs-stable diff, trace_id selection."""

from __future__ import annotations

import itertools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ebpftop.collectors.profiles import aggregate as a
from ebpftop.collectors.profiles.model import StackSample, make_tags, tag
from ebpftop.collectors.profiles.windows import SlidingWindows


def S(frames: str, n: int, **tags: str) -> StackSample:
    return StackSample(tuple(frames.split(";")), n, make_tags(tags))


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


CANARY = [
    S("main;serve;parse", 30, service="api", version="2", pid="10"),
    S("main;serve;regex;regex", 50, service="api", version="2", pid="10"),
    S("main;serve", 20, service="api", version="2", pid="10"),
]
STABLE = [
    S("main;serve;parse", 60, service="api", version="1", pid="20"),
    S("main;serve;regex", 10, service="api", version="1", pid="20"),
    S("main;serve", 30, service="api", version="1", pid="20"),
]


def test_top_functions_self_and_total_count_recursion_once():
    stats = {f.name: (f.self_samples, f.total_samples) for f in a.top_functions(CANARY)}
    assert stats == {"regex": (50, 50), "parse": (30, 30), "serve": (20, 100), "main": (0, 100)}
    assert [f.name for f in a.top_functions(CANARY, 2)] == ["regex", "parse"]
    assert [f.name for f in a.top_functions(CANARY, 2, by="total")] == ["serve", "main"]


def test_group_by_tag_set_with_shares_and_top_frames():
    groups = a.group_by(CANARY + STABLE, ["version"])
    assert [(g.tags, g.samples) for g in groups] == [((("version", "1"),), 100), ((("version", "2"),), 100)]
    assert [g.share for g in groups] == [0.5, 0.5]
    assert groups[1].top[0].name == "regex"
    # a key no stack has groups everything under the empty tag set
    (only,) = a.group_by(CANARY, ["trace_id"])
    assert only.tags == () and only.samples == 100 and only.share == 1.0


def test_diff_top_ranks_by_change_in_share():
    rows = a.diff_top(CANARY, STABLE, 3)
    assert rows[0].name == "regex" and round(rows[0].delta, 6) == 0.4  # 50% vs 10%
    assert rows[1].name == "parse" and round(rows[1].delta, 6) == -0.3  # 30% vs 60%
    assert a.diff_top([], STABLE)[0].canary_share == 0.0  # no canary samples: shares 0, no crash


def test_filter_and_trace_selection_falls_back_to_the_service_and_says_so():
    pprof = a.summarize(
        "pprof",
        "http://x",
        0,
        10,
        [S("main;h", 5, trace_id="abc", service="api"), S("main;g", 3, trace_id="def")],
    )
    bpf10 = a.summarize("bpf 10s", "bpf", 50, 60, [S("main;x", 4, service="api")])
    bpf60 = a.summarize(
        "bpf 60s", "bpf", 0, 60, [S("main;x", 9, service="api"), S("main;y", 2, service="db")]
    )
    hit = a.select_for_trace([bpf10, bpf60, pprof], "abc", "api")
    assert hit.matched_trace and [s.frames for s in hit.stacks] == [("main", "h")]
    span = f"{clock(0)}-{clock(10)}"
    assert hit.how == f"trace_id=abc: 5 samples carry it (pprof of api at http://x, {span})"
    miss = a.select_for_trace([bpf10, bpf60, pprof], "zzz", "api")
    assert not miss.matched_trace
    assert miss.how == (
        f"no sample carries trace_id=zzz (pprof of api at http://x, {span}): no CPU sample "
        "(the request waited, or was too brief); showing service=api (14 samples)"
    )
    # the 10 s window lies inside the 60 s one: counted once, from the longer
    assert sorted((s.frames[-1], s.count) for s in miss.stacks) == [("h", 5), ("x", 9)]
    assert a.select_for_trace([pprof], "zzz").stacks == ()


def test_a_trace_that_finds_nothing_says_why_and_what_is_shown_instead():
    pprof = a.summarize("pprof", "http://x", 100, 110, [S("main;h", 5, trace_id="abc", service="api")])
    bpf = a.summarize("bpf 60s", "bpf", 50, 110, [S("main;x", 9, service="api")])
    newer = a.select_for_trace([pprof, bpf], "zzz", "api", at=115)
    assert f"the request ({clock(115)}) is newer than the last profile" in newer.how
    older = a.select_for_trace([pprof, bpf], "zzz", "api", at=20)
    assert f"the request ({clock(20)}) is older than the profiles kept" in older.how
    assert older.how.endswith("showing service=api (14 samples)")
    nobody = a.select_for_trace([pprof], "zzz", "db")
    assert nobody.stacks == () and nobody.how.endswith("; no sample of service=db either: nothing to show")
    only_bpf = a.select_for_trace([bpf], "zzz", "api")
    assert only_bpf.how.startswith(
        "no sample carries trace_id=zzz (no pprof profile: only pprof samples carry trace ids; "
        "give --pprof URL)"
    )
    # the trace's samples are counted but its stacks were left out of the listing
    many = [S(f"main;f{i}", 10, trace_id=f"t{i}") for i in range(5)] + [S("main;light", 1, trace_id="lite")]
    cut = a.summarize("pprof", "http://x", 100, 110, many, max_stacks=5)
    assert "its 1 samples are in lighter stacks left out" in a.select_for_trace([cut], "lite").how
    assert a.filter_stacks(CANARY + STABLE, version="1", pid="20") == STABLE


def test_sliding_windows_forget_old_buckets():
    w = SlidingWindows((10, 60))
    key = (make_tags({"pid": "1"}), ("main",))
    other = (make_tags({"pid": "2"}), ("main",))
    for t in range(0, 100):
        w.add(float(t), {key: 1, **({other: 5} if t == 85 else {})})
    counts, oldest = w.counts(99.0, 10)
    assert counts == {key: 10} and oldest == 90.0
    counts, oldest = w.counts(99.0, 60)
    assert counts == {key: 60, other: 5} and oldest == 40.0
    assert len(w._in[60]) == 60  # bounded by the longest window
    counts, _ = w.counts(146.0, 60)  # nothing new for a while: old drains age out
    assert counts == {key: 13}
    assert w.counts(500.0, 10) == ({}, 500.0)


def test_summarize_bounds_stacks_but_keeps_totals_and_small_groups():
    big = [S(f"main;f{i}", 100, service="big") for i in range(50)]
    small = [S("main;tiny", 1, service="small")]
    p = a.summarize(
        "w",
        "bpf",
        0,
        1,
        big + small + [S("main;f0", 100, service="big")],
        max_stacks=10,
        group_keys=("service",),
    )
    assert p.total_samples == 5101
    assert len(p.stacks) == 10
    assert p.omitted_samples == p.total_samples - sum(s.count for s in p.stacks)
    assert any(tag(s.tags, "service") == "small" for s in p.stacks)  # not crowded out
    assert p.stacks[0].count == 200  # identical stacks merged
    assert p.total_cpu_ns is None  # BPF has sample counts, not CPU time: no number, not 0


def test_folded_format():
    assert a.folded(CANARY) == ["main;serve;regex;regex 50", "main;serve;parse 30", "main;serve 20"]


def test_flame_rows_fit_the_terminal():
    tree = a.flame_tree(CANARY)
    rows = a.flame_rows(tree, 40, 10)
    assert [c.name for c in rows[0]] == ["all"] and rows[0][0].width == 40
    assert [(c.name, c.col, c.width) for c in rows[3]] == [("regex", 0, 20), ("parse", 20, 12)]
    assert [(c.name, c.width) for c in rows[4]] == [("regex", 20)]  # recursion is its own row
    assert len(a.flame_rows(tree, 40, 2)) == 2
    assert a.flame_rows(a.flame_tree([]), 40, 10) == []


_stack = st.builds(
    lambda fr, n: StackSample(tuple(fr), n),
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6),
    st.integers(1, 1000),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_stack, max_size=30), st.integers(1, 200), st.integers(1, 12))
def test_flame_cells_never_overlap_or_leave_their_parent(stacks, width, height):
    tree = a.flame_tree(stacks)
    rows = a.flame_rows(tree, width, height)
    assert len(rows) <= height
    for upper, row in itertools.pairwise(rows):
        spans = sorted((c.col, c.col + c.width) for c in row)
        assert all(w > 0 for _, w in ((c.col, c.width) for c in row))
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(spans))  # no overlap
        for lo, hi in spans:  # inside some cell of the row above
            assert any(c.col <= lo and hi <= c.col + c.width for c in upper)
    for row in rows:
        assert all(c.col >= 0 and c.col + c.width <= width for c in row)
