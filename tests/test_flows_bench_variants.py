"""The flows benchmark's program variants stay true to the shipped source.

bench/flows_variants.py builds each variant by substituting text in flows.bpf.c; if
the source moves on, a variant must fail to build rather than quietly measure the
shipped program under another name. The reference programs (made in
bench/flows_variants.py from the shipped source) must pass the verifier, and the
shipped source carries no bench-only switch or code.
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
    with pytest.raises(SystemExit, match=r"plain adds.*no longer contains"):
        flows_variants.variant_source(tmp_path, "plain adds")


def has_map(b, name: bytes) -> bool:
    try:
        b[name]
    except KeyError:
        return False
    return True


def test_the_shipped_source_has_no_bench_switches():
    # bench stays outside the product: its references are substitutions in bench/
    assert "bench" not in ORIGINAL.lower() and "#if" not in ORIGINAL, "bench-only code in flows.bpf.c"


def test_reference_programs_load_and_the_shipped_build_has_none_of_them(tmp_path):
    need_root()
    from bcc import BPF

    from ebpftop.collectors.flows.loader import HERE, FlowsDatapath

    refs = flows_variants.references(tmp_path)
    assert list(refs) == ["shipped", "parse only", "one array line"]
    for name, (path, cflags) in refs.items():
        b = BPF(src_file=path.encode(), cflags=[f"-I{HERE}", "-Wno-unused-function", *cflags])
        try:
            for fn in (b"ebpftop_fl_in", b"ebpftop_fl_eg"):
                b.load_func(fn, BPF.SCHED_CLS)  # raises if the verifier refuses it
            assert has_map(b, b"bench_slots") == (name == "one array line")
            assert has_map(b, b"flows")
        finally:
            b.cleanup()
    dp = FlowsDatapath(max_flows=1024)
    try:
        dp.compile()
        assert has_map(dp.bpf, b"flows") and not has_map(dp.bpf, b"bench_slots")
    finally:
        dp.close()
