"""The flows benchmark's program variants stay true to the shipped source.

bench/flows_variants.py builds each variant by substituting text in flows.bpf.c; if
the source moves on, a variant must fail to build rather than quietly measure the
shipped program under another name. The bench-only reference programs
(FLOWS_BENCH_* in flows.bpf.c) must pass the verifier, and the loader's build must
not carry any of their code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
import flows_variants
from conftest import need_root

ORIGINAL = flows_variants.SRC.read_text()


@pytest.mark.parametrize("name", sorted(flows_variants.VARIANTS))
def test_every_variant_changes_what_it_says(tmp_path, name):
    path, cflags = flows_variants.variant_source(tmp_path, name)
    text = Path(path).read_text()
    max_flows, subs, extra, _ = flows_variants.VARIANTS[name]
    assert f"-DMAX_FLOWS={max_flows}" in cflags and all(f in cflags for f in extra)
    for anchor, repl in subs:
        assert anchor not in text or repl.count(anchor), (name, anchor)
        assert repl in text
    assert (text != ORIGINAL) == bool(subs)


def test_a_variant_whose_anchor_is_gone_refuses_to_build(tmp_path, monkeypatch):
    moved = tmp_path / "flows.bpf.c"
    moved.write_text(
        ORIGINAL.replace(
            "__sync_fetch_and_add(&v->bytes, bytes);", "__sync_fetch_and_add(&v->bytes, (u64)bytes);"
        )
    )
    monkeypatch.setattr(flows_variants, "SRC", moved)
    with pytest.raises(SystemExit, match="plain adds.*no longer contains"):
        flows_variants.variant_source(tmp_path, "plain adds")


def has_map(b, name: bytes) -> bool:
    try:
        b[name]
    except KeyError:
        return False
    return True


def test_reference_programs_load_and_the_shipped_build_has_none_of_them():
    need_root()
    from bcc import BPF

    from ebpftop.collectors.flows.loader import FLOWS_SRC, HERE, FlowsDatapath

    for define in ("FLOWS_BENCH_PARSE_ONLY", "FLOWS_BENCH_ONE_LINE"):
        b = BPF(
            src_file=str(FLOWS_SRC).encode(),
            cflags=[f"-I{HERE}", "-DMAX_FLOWS=1024", f"-D{define}", "-Wno-unused-function"],
        )
        try:
            for fn in (b"ebpftop_fl_in", b"ebpftop_fl_eg"):
                b.load_func(fn, BPF.SCHED_CLS)  # raises if the verifier refuses it
            assert has_map(b, b"bench_slots") == (define == "FLOWS_BENCH_ONE_LINE")
        finally:
            b.cleanup()
    dp = FlowsDatapath(max_flows=1024)
    try:
        dp.compile()
        assert has_map(dp.bpf, b"flows") and not has_map(dp.bpf, b"bench_slots")
    finally:
        dp.close()
