"""The rules benchmark's tools stay true to the shipped program.

bench/rules_variants.py builds each variant by substituting text in rules.bpf.c: if the
source moves on, a variant must fail to build rather than quietly measure the shipped
program under another name. bench/rules_insns.py replays the verified program on the
benchmark's packet: the replay must end where the kernel does, at the matching rule's
counter. bench/rules_ab.py must run each version from its own checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
import rules_variants
from conftest import need_root
from netns import PYTHON

BENCH = Path(__file__).parent.parent / "bench"
ORIGINAL = rules_variants.SRC.read_text()


@pytest.mark.parametrize("name", sorted(rules_variants.VARIANTS))
def test_every_rules_variant_changes_what_it_says(tmp_path, name):
    subs = rules_variants.VARIANTS[name][0]
    text = Path(rules_variants.variant_source(tmp_path, name)).read_text()
    for anchor, repl in subs:
        assert repl in text and (anchor not in text or anchor in repl), (name, anchor)
    assert (text != ORIGINAL) == bool(subs)


def test_replayed_packets_end_at_the_matching_rules_counter():
    need_root()
    got = subprocess.run(
        [PYTHON, str(BENCH / "rules_insns.py"), "1,2T,256T"], capture_output=True, text=True, timeout=300
    )
    assert got.returncode == 0, got.stderr
    rows = {line.split()[0]: line for line in got.stdout.splitlines()}
    for name, n in (("1", 1), ("2T", 2), ("256T", 256)):
        assert f"counted as rule {n} of {n}" in rows[name], (
            got.stdout
        )  # the benchmark's traffic matches the last rule
        assert "returns -1" in rows[name]  # count rules pass the packet on (TC_ACT_UNSPEC)
    run = {name: int(rows[name].split()[1]) for name in rows}
    assert 100 < run["1"] < run["2T"] < 1000, run  # every field through its table: more instructions
    assert abs(run["256T"] - run["2T"]) < 20, (
        run
    )  # 128 times the rules: only the scan for the first set word grows


def test_ab_runs_each_version_from_its_checkout():
    need_root()
    repo = Path(__file__).parent.parent
    got = subprocess.run(
        [PYTHON, str(BENCH / "rules_ab.py"), "2", "2T", "here=", f"there={repo}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert got.returncode == 0, got.stderr
    assert f"here: datapath from {repo.resolve()}/collectors/rules/datapath.py" in got.stderr
    assert (
        "pkg0/ebpftop/collectors/rules/datapath.py" in got.stderr.split("there: ")[1]
    )  # through a package of its own
    rows = [line for line in got.stdout.splitlines() if "first in the chain" in line]
    assert [r.split()[0] for r in rows] == ["here", "there"] and "paired, against here: median  +0.0" in rows[
        0
    ]
