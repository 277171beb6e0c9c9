"""The BPF CPU sampler on a real CPU-burning process started with OTel variables: its
service tag and its hot function come out on top, and nothing stays attached."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import need, need_root

from ebpftop.collectors.profiles import aggregate
from ebpftop.collectors.profiles.collector import ProfilesCollector
from ebpftop.collectors.profiles.model import tag
from ebpftop.collectors.profiles.sampler import FN_NAME, Sampler
from ebpftop.collectors.profiles.tags import process_tags
from ebpftop.core.model import Health, Snapshot, from_json, to_json

HOT = "ebpftop_test_hot_spin"
BURN_C = f"""
#include <stdint.h>
volatile uint64_t sink;
__attribute__((noinline)) void {HOT}(void) {{
    uint64_t x = 1;
    for (long i = 0; i < 50000000L; i++) x = x * 6364136223846793005ULL + 1;
    sink = x;
}}
int main(void) {{ for (;;) {HOT}(); }}
"""
OTEL = {
    "OTEL_SERVICE_NAME": "burner-svc",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,service.version=1.2.3",
}
DEADLINE = 90  # seconds to wait for compile + samples on a loaded machine (not asserted)


@pytest.fixture(scope="module")
def burner(tmp_path_factory):
    need_root()
    need(shutil.which("gcc") is not None, "needs gcc to build the CPU-burning test program")
    d = tmp_path_factory.mktemp("burner")
    (d / "burn.c").write_text(BURN_C)
    subprocess.run(
        ["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(d / "burn"), str(d / "burn.c")],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen([str(d / "burn")], env={"PATH": "/usr/bin:/bin", **OTEL})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def loaded_progs() -> set[int]:
    """Ids of every loaded sampler program on the machine (other ebpftops included)."""
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    return {p["id"] for p in json.loads(out.stdout) if p.get("name") == FN_NAME}


def held_progs() -> set[int]:
    """Ids of the BPF programs this process holds a descriptor of."""
    ids = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def our_progs() -> set[int]:
    return loaded_progs() & held_progs()


def test_sampler_finds_the_hot_function_of_the_tagged_process(burner):
    assert not our_progs()
    s = Sampler(hz=99)
    s.start()
    try:
        mine = our_progs()
        assert len(mine) == 1, "the sampler's program should be loaded while it runs"
        stacks = []
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and sum(r.count for r in stacks) < 50:
            time.sleep(0.5)
            stacks += [r for r in s.drain() if r.tgid == burner.pid]
    finally:
        s.close()
        s.close()  # twice is fine
    assert not (loaded_progs() & mine), "close() must detach and unload the program"
    assert sum(r.count for r in stacks) >= 50
    from ebpftop.collectors.profiles.model import StackSample

    samples = [StackSample(r.frames, r.count) for r in stacks]
    top = aggregate.top_functions(samples, 1)[0]
    assert top.name == HOT
    assert top.self_samples >= 0.8 * sum(r.count for r in stacks)
    assert {"main"} <= {f.name for f in aggregate.top_functions(samples, by="total")}
    tags = process_tags(burner.pid)
    assert (tag(tags, "service"), tag(tags, "env"), tag(tags, "version")) == ("burner-svc", "test", "1.2.3")


async def _collect_until(c: ProfilesCollector, ok) -> object:
    end = time.monotonic() + DEADLINE
    data = None
    while time.monotonic() < end:
        data = await c.collect()
        if ok(data):
            return data
        await asyncio.sleep(0.5)
    return data


def test_collector_reports_the_service_tag_with_its_hot_function(burner):
    assert not our_progs()

    async def run():
        c = ProfilesCollector(hz=49, interval=0.5)
        await c.start()
        first = await c.collect()  # at once: the compile runs in a thread
        assert [(s.name, s.state) for s in first.sources] == [("bpf", "pending")]

        def burner_group(d):
            if not d.windows:
                return None
            return next(
                (g for g in d.windows[0].groups if tag(g.tags, "pid") == str(burner.pid) and g.samples >= 20),
                None,
            )

        try:
            data = await _collect_until(c, burner_group)
            group = burner_group(data)
            assert group is not None, f"no samples of the burner: {data}"
            assert tag(group.tags, "service") == "burner-svc"
            assert tag(group.tags, "env") == "test" and tag(group.tags, "version") == "1.2.3"
            assert group.top[0].name == HOT
            assert [w.name for w in data.windows] == ["bpf 10s", "bpf 60s"]
            assert data.hz == 49 and data.sources[0].state == "ok"
            assert c.degraded_reason(data) == ""
            # what the headless snapshot and the recorder carry decodes to the same data
            snap = Snapshot("profiles", 1, time.time(), Health(), data)
            assert from_json(to_json(snap)).data == data

            async def tick():
                for _ in range(6):
                    await asyncio.sleep(0.5)
                    await c.collect()

            cap, _ = await asyncio.gather(c.capture(pid=str(burner.pid), seconds=2), tick())
            assert cap.name == f"capture pid={burner.pid}"
            assert cap.total_samples > 0 and {tag(s.tags, "pid") for s in cap.stacks} == {str(burner.pid)}
            assert aggregate.top_functions(cap.stacks, 1)[0].name == HOT
            assert (await c.collect()).captures[-1] == cap
            mine = our_progs()
            assert len(mine) == 1
        finally:
            await c.close()
            await c.close()
        return mine

    mine = asyncio.run(run())
    assert not (loaded_progs() & mine)


def test_ebpftop_does_not_sample_itself(burner):
    s = Sampler(hz=99, skip_tgid=os.getpid())
    s.start()
    try:
        seen: set[int] = set()
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and burner.pid not in seen:
            # burn a little of our own CPU so we would show up if we were sampled
            t = time.monotonic()
            while time.monotonic() - t < 0.3:
                pass
            seen |= {r.tgid for r in s.drain()}
    finally:
        s.close()
    assert burner.pid in seen and os.getpid() not in seen


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain_burner(s: Sampler, pid: int, want_cpu: float, between=lambda: time.sleep(0.5)):
    """Drain until the burner used `want_cpu` seconds of CPU: (its samples, its CPU seconds
    over the same span). The first drain is dropped, so the counted span starts at a drain."""
    s.drain()
    cpu0 = cpu_seconds(pid)
    got = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        between()
        got += [r for r in s.drain() if r.tgid == pid]
        used = cpu_seconds(pid) - cpu0
        if used >= want_cpu:
            return got, used
    return got, cpu_seconds(pid) - cpu0


def test_each_sample_is_counted_once_across_drains(burner):
    """The counts are read and cleared in one batch per drain: a sample lost between
    read and delete, or read twice, moves the count away from CPU time x frequency."""
    hz = 99
    s = Sampler(hz=hz)
    s.start()
    try:
        s.drain()  # whatever was counted while compiling
        time.sleep(0.3)
        stacks, used = _drain_burner(s, burner.pid, 4.0)
    finally:
        s.close()
    assert used >= 1.0, "the burner got almost no CPU: nothing to compare"
    samples = sum(r.count for r in stacks)
    assert 0.8 * used * hz <= samples <= 1.2 * used * hz, (samples, used)
    assert len(stacks) >= 2, "expected several drains with samples of the burner"


def test_stacks_stay_right_when_the_stack_table_is_cleared(burner):
    """A tiny stack table is cleared every drain or so (ids for 1/16 of it held): names
    read before a clear must not be reused for whatever takes the ids after it."""
    import hashlib
    import zlib

    blob = os.urandom(1 << 20)

    def busy_elsewhere():
        # our own process (not skipped here) runs through distinct C paths: new stack ids
        t = time.monotonic()
        while time.monotonic() - t < 0.3:
            hashlib.sha256(blob).digest()
            zlib.compress(blob[:200_000])
            sorted(blob[:100_000])
        time.sleep(0.2)

    hz = 99
    s = Sampler(hz=hz, stack_slots=16)
    s.start()
    try:
        stacks, used = _drain_burner(s, burner.pid, 4.0, busy_elsewhere)
        clears = s.clears
    finally:
        s.close()
    assert clears >= 1, "the tiny stack table should have been cleared"
    samples = sum(r.count for r in stacks)
    assert 0.8 * used * hz <= samples <= 1.2 * used * hz, (samples, used)
    named = [r for r in stacks if "[stack lost]" not in r.frames]
    assert named, "every burner stack was lost"
    from ebpftop.collectors.profiles.model import StackSample

    # stacks refused by the full table say so; those named are the burner's, never another's
    burner_frames = {"main", HOT, "_start", "[unknown]"}
    user = {f for r in named for f in r.frames if not f.endswith("_[k]")}
    assert {f for f in user if not f.startswith("__libc_start")} <= burner_frames, user
    top = aggregate.top_functions([StackSample(r.frames, r.count) for r in named], 1)[0]
    assert top.name == HOT
