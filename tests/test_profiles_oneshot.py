"""`ebpftop profile`: one profile over a fixed span, read once at the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
import test_profiles_sampler
from conftest import default_signals
from test_profiles_sampler import HOT, cpu_seconds, loaded_progs

from ebpftop.cli import main as cli
from ebpftop.collectors.profiles import oneshot
from ebpftop.collectors.profiles.model import make_tags, tag
from ebpftop.collectors.profiles.sampler import RawStack, SamplerUnavailable

burner = test_profiles_sampler.burner  # the CPU-burning process, a fixture shared with the sampler's tests

EBPFTOP = [sys.executable, "-m", "ebpftop.cli.main"]


class FakeSampler:
    """Records what the one-shot asks of it; `drain` hands back fixed stacks."""

    def __init__(self, stacks, lost=(0, 0), fail_drain=False):
        self.stacks, self._lost, self.fail_drain = stacks, lost, fail_drain
        self.calls = []

    def start(self):
        self.calls.append("start")

    def drain(self):
        self.calls.append("drain")
        if self.fail_drain:
            raise OSError("map read failed")
        return list(self.stacks)

    def lost(self):
        self.calls.append("lost")
        return self._lost

    def close(self):
        self.calls.append("close")


class FakeTags:
    def __init__(self, by_pid):
        self.by_pid = by_pid

    def get(self, pid, comm=None, *, early=0.0):
        return make_tags({"pid": str(pid), "comm": comm, **self.by_pid.get(pid, {})})


def test_one_read_at_the_end_tags_and_counts():
    s = FakeSampler(
        [
            RawStack(10, "api", ("main", "handle", "parse"), 30),
            RawStack(10, "api", ("main", "handle"), 10),
            RawStack(20, "db", ("main", "scan"), 60),
        ],
        lost=(3, 1),
    )
    shot = oneshot.sample(49, 0.05, sampler=s, tags=FakeTags({10: {"service": "api"}, 20: {"service": "db"}}))
    assert s.calls == ["start", "drain", "lost", "close"]  # nothing read while sampling
    p = shot.profile
    assert p.total_samples == 100 and shot.lost == (3, 1) and not shot.interrupted
    assert 0.05 <= shot.seconds < 5
    by_service = {tag(g.tags, "service"): g for g in p.groups}
    assert by_service["db"].samples == 60 and by_service["api"].samples == 40
    assert by_service["api"].top[0].name == "parse" and by_service["api"].top[0].self_samples == 30
    assert all(tag(st.tags, "source") == "bpf" for st in p.stacks)


def test_stop_ends_the_span_early_and_says_so():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    shot = oneshot.sample(49, 30, stop=stop, sampler=FakeSampler([]), tags=FakeTags({}))
    assert time.monotonic() - t0 < 10
    assert shot.interrupted and shot.profile.total_samples == 0


def test_the_sampler_is_closed_when_the_read_fails():
    s = FakeSampler([], fail_drain=True)
    with pytest.raises(OSError):
        oneshot.sample(49, 0.01, sampler=s, tags=FakeTags({}))
    assert s.calls[-1] == "close"


def _run_cli(monkeypatch, capsys, argv, shot_or_exc):
    def fake(hz, seconds, **kw):
        if isinstance(shot_or_exc, Exception):
            raise shot_or_exc
        return shot_or_exc

    monkeypatch.setattr(oneshot, "sample", fake)
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _shot(stacks, by_pid):
    return oneshot.sample(49, 0.01, sampler=FakeSampler(stacks), tags=FakeTags(by_pid))


def test_cli_output_never_carries_control_characters(monkeypatch, capsys):
    evil = "\x1b[2J[red]boom[/red]\x07"
    shot = _shot([RawStack(7, "x\x1b]0;t\x07", ("main", evil), 5)], {7: {"service": evil}})
    for argv in (["profile"], ["profile", "--folded"], ["profile", "--json"]):
        rc, out, err = _run_cli(monkeypatch, capsys, argv, shot)
        assert rc == 0, err
        assert "\x1b" not in out and "\x07" not in out, argv
        assert "boom" in out
    rc, out, _ = _run_cli(monkeypatch, capsys, ["profile", "--folded"], shot)
    line = out.strip()
    frames, count = line.rsplit(" ", 1)
    assert (
        count == "5" and len(frames.split(";")) == 3
    )  # comm, main, the evil frame (its ';' and spaces replaced)


def test_cli_says_why_the_sampler_cannot_run(monkeypatch, capsys):
    rc, out, err = _run_cli(
        monkeypatch,
        capsys,
        ["profile"],
        SamplerUnavailable("the BPF CPU sampler needs root", "run `sudo ebpftop`"),
    )
    assert rc == 1 and out == ""
    assert "needs root" in err and "sudo ebpftop" in err


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["profile", "--duration", "0"], "--duration"),
        (["profile", "--duration", "soon"], "--duration"),
        (["profile", "--hz", "5000"], "--hz"),
    ],
)
def test_cli_refuses_bad_arguments(capsys, argv, problem):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert problem in capsys.readouterr().err


# --- real BPF -------------------------------------------------------------------------


def test_profile_command_tags_the_burner_and_counts_its_cpu(burner):
    hz = 99
    p = subprocess.Popen(
        [*EBPFTOP, "profile", "--duration", "3", "--hz", str(hz), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        progs = _wait_for_sampler(p)  # loaded, so the span has not started yet
        cpu0, t0 = cpu_seconds(burner.pid), time.monotonic()
        stdout, stderr = p.communicate(timeout=120)
        used, wall = cpu_seconds(burner.pid) - cpu0, time.monotonic() - t0
    finally:
        p.kill()
    assert p.returncode == 0, stderr[-2000:]
    doc = json.loads(stdout)
    assert doc["hz"] == hz and 2.9 <= doc["seconds"] < 10 and not doc["interrupted"]
    mine = [g for g in doc["profile"]["groups"] if dict(map(tuple, g["tags"])).get("pid") == str(burner.pid)]
    assert len(mine) == 1, doc["profile"]["groups"]
    tags = dict(map(tuple, mine[0]["tags"]))
    assert (tags["service"], tags["env"], tags["version"]) == ("burner-svc", "test", "1.2.3")
    assert mine[0]["top"][0]["name"] == HOT
    # One thread burning: never more than span x hz samples (each counted once), and
    # about its CPU time x hz. `used` runs from the load to the exit, so it holds the
    # span's CPU time and at most (wall - span) s more: a bound that holds however
    # much of the 2 shared cores the burner got (a fixed share of span x hz did not).
    span, got = doc["seconds"], mine[0]["samples"]
    assert got <= 1.15 * min(span, used) * hz, (got, span, used)
    assert got >= 0.8 * (used - (wall - span)) * hz, (got, span, used, wall)
    assert progs and not (loaded_progs() & progs), "the sampler's program must be gone when the command exits"


def test_profile_command_reports_what_it_sampled_when_interrupted(burner):
    with default_signals(signal.SIGINT):  # Ctrl-C must reach it even if ours is ignored
        p = subprocess.Popen(
            [*EBPFTOP, "profile", "--duration", "300", "--folded"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        _wait_for_sampler(p)
        # until the burner has had a second of CPU (about 49 samples at the default
        # 49 Hz), not a fixed 2 s that a loaded machine may give it little of
        cpu0, end = cpu_seconds(burner.pid), time.monotonic() + 90
        while time.monotonic() < end and cpu_seconds(burner.pid) - cpu0 < 1.0:
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err[-2000:]
    burn = [line for line in out.splitlines() if line.startswith("burn;")]
    assert burn, out[:2000]
    assert any(line.rsplit(" ", 1)[0].endswith(HOT) and int(line.rsplit(" ", 1)[1]) > 20 for line in burn), (
        burn
    )


def _wait_for_sampler(p: subprocess.Popen) -> set[int]:
    """The ids of the sampler programs `p` holds, once it holds one."""
    end = time.monotonic() + 90
    while time.monotonic() < end and p.poll() is None:
        if ids := _samplers_of(p.pid):
            return ids
        time.sleep(0.02)
    return set()


def _samplers_of(pid: int) -> set[int]:
    """The loaded sampler programs process `pid` holds (other runs on the host may
    have theirs loaded too)."""
    import os

    ids = loaded_progs()
    held = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return held
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                held |= {int(line.split()[1]) for line in f if line.startswith("prog_id:")}
        except OSError:
            pass
    return held & ids
