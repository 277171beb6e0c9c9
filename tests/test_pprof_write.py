"""A tagged profile written as pprof: read back by our parser and by Go's own pprof."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import pytest
import test_profiles_sampler
from test_profiles_sampler import HOT

from ebpftop.cli import main as cli
from ebpftop.collectors.profiles import pprof
from ebpftop.collectors.profiles.model import Profile, StackSample, make_tags
from ebpftop.collectors.profiles.pprof_write import OMITTED, pprof_bytes

burner = test_profiles_sampler.burner  # a CPU-burning process tagged burner-svc/test/1.2.3

EBPFTOP = [sys.executable, "-m", "ebpftop.cli.main"]
CHECKOUT = {"service": "checkout", "env": "prod", "version": "1.4.2", "trace_id": "4bf92f35", "pid": "42"}


def profile(omitted: int = 0) -> Profile:
    stacks = (
        StackSample(("main", "serve", "checkout.price"), 30, make_tags({**CHECKOUT, "source": "bpf"})),
        StackSample(("main", "idle"), 10, make_tags({"service": "cart", "pid": "7", "source": "bpf"})),
        StackSample(("main", "gc"), 4, make_tags({"service": "cart"}), cpu_ns=81_000_000),
    )
    return Profile("bpf 10s", "bpf", 1000.0, 1010.0, 44 + omitted, stacks, omitted_samples=omitted)


def go_pprof(*argv: str) -> str:
    if shutil.which("go") is None:
        pytest.skip("needs Go (go tool pprof)")
    out = subprocess.run(["go", "tool", "pprof", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_what_is_written_reads_back_with_its_stacks_counts_labels_and_period():
    body = pprof_bytes(profile(omitted=6), hz=50)
    assert body[:2] == b"\x1f\x8b"
    back = pprof.parse_body(body)
    assert back.sample_types == (("samples", "count"), ("cpu", "nanoseconds"))
    assert back.period_type == ("cpu", "nanoseconds") and back.period == 20_000_000  # 1/50 s
    assert back.time_nanos == 1000 * 10**9 and back.duration_nanos == 10 * 10**9
    by_frames = {s.frames: s for s in back.stacks}
    price = by_frames[("main", "serve", "checkout.price")]
    assert price.count == 30 and price.cpu_ns == 30 * 20_000_000
    assert dict(price.tags) == CHECKOUT  # every tag but `source`
    assert by_frames[("main", "gc")].cpu_ns == 81_000_000  # a measured cpu time is kept as it is
    assert by_frames[(OMITTED,)].count == 6
    assert back.total_samples == 50


def test_a_zero_or_negative_rate_is_refused():
    with pytest.raises(ValueError, match="hz must be positive"):
        pprof_bytes(profile(), hz=0)


def test_hostile_tag_values_stay_one_label_and_are_bounded():
    evil = 'a"b\nc\x1b[31m' + "x" * 10_000
    prof = Profile("p", "bpf", 0.0, 1.0, 1, (StackSample(("f",), 1, make_tags({"service": evil})),))
    back = pprof.parse_body(pprof_bytes(prof, hz=99))
    (value,) = [v for k, v in back.stacks[0].tags if k == "service"]
    assert value.startswith('a"b\nc\x1b[31m') and len(value) == 256


def test_go_tool_pprof_shows_the_functions_and_the_labels(tmp_path):
    path = tmp_path / "cpu.pb.gz"
    path.write_bytes(pprof_bytes(profile(), hz=50))
    top = go_pprof("-top", str(path))
    for name in ("checkout.price", "idle", "gc", "main"):
        assert name in top
    assert "Type: cpu" in top
    tags = go_pprof("-tags", str(path))
    for key, value in CHECKOUT.items():
        assert f"{key}:" in tags and value in tags


def test_the_cli_refuses_an_unwritable_path_before_sampling(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "cpu.pb.gz"
    assert cli.main(["profile", "--duration", "1", "--pprof", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "--pprof" in err and "no such directory" in err
    assert cli.main(["profile", "--duration", "1", "--pprof", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_profile_pprof_writes_the_burner_with_its_labels_for_go_tool_pprof(burner, tmp_path):
    path = tmp_path / "cpu.pb.gz"
    out = subprocess.run(
        [*EBPFTOP, "profile", "--duration", "2", "--hz", "99", "--pprof", str(path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "samples at 99 Hz" in out.stdout  # the table is still printed
    back = pprof.parse(gzip.decompress(path.read_bytes()))
    assert back.period == round(1e9 / 99)
    mine = [s for s in back.stacks if dict(s.tags).get("pid") == str(burner.pid)]
    assert mine and any(HOT in s.frames for s in mine)
    assert dict(mine[0].tags)["service"] == "burner-svc"
    top = go_pprof("-top", str(path))
    assert HOT in top
    tags = go_pprof("-tags", str(path))
    for value in ("burner-svc", "test", "1.2.3", str(burner.pid)):
        assert value in tags
