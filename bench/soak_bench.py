"""Kiosk soak: does a dashboard left on a wall display grow?

The kiosk app (read-only, 160x48, headless Textual driver) is fed many hours' worth of
one-second samples as fast as it draws them. The samples are the demo recording's
(tests/data/demo.rec: host, flows, canary, rollout, profiles, rules), changed every
second the way a real node changes: new 5-tuples and pids for the flows, new trace ids
for the exemplars and the profile tags. Whatever the app keys by flow, pid or trace id
would pile up here. Resident memory is read (after a full garbage collection) at
checkpoints; growth is judged after a warm-up, once every bounded history is full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import pathlib
import sys
import tempfile
import time

import psutil
from results import machine, write_section

from ebpftop.collectors.registry import load_payload_types
from ebpftop.core.replay import read_recording
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp

load_payload_types()  # read_recording decodes typed only what is registered

DEMO = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "demo.rec"
QUICK = "--quick" in sys.argv
SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "600" if QUICK else "3000"))
CHECKS = 10
HISTORY = Settings().history
WARMUP = 0.7  # share of the run before growth is judged: histories and bounded render caches full


def templates() -> dict[str, object]:
    """The last sample of each source in the demo recording."""
    latest: dict[str, object] = {}
    for snap in read_recording(str(DEMO)).frames:
        latest[snap.source] = snap
    return latest


def churn(source: str, data, i: int):
    """The sample of second `i`: what a busy node would change in it."""
    if source == "flows":
        flows = tuple(
            dataclasses.replace(
                f,
                sport=1024 + (i * 13 + j) % 60000,
                pid=(f.pid or 0) + i % 30000,
                first_seen=f.first_seen + i,
                last_seen=f.last_seen + i,
            )
            for j, f in enumerate(data.flows)
        )
        return dataclasses.replace(data, flows=flows)
    if source == "canary":
        services = tuple(
            dataclasses.replace(
                s,
                exemplars=tuple(
                    dataclasses.replace(e, trace_id=f"{i:016x}{k:016x}", time=e.time + i)
                    for k, e in enumerate(s.exemplars)
                ),
                evaluated_at=(s.evaluated_at or 0) + i,
            )
            for s in data.services
        )
        return dataclasses.replace(data, services=services)
    if source == "profiles":

        def retag(stack, k):
            tags = tuple((key, f"{i % 30000 + 1000}" if key == "pid" else value) for key, value in stack.tags)
            return dataclasses.replace(stack, tags=(*tags, ("trace_id", f"{i:016x}{k:016x}")))

        windows = tuple(
            dataclasses.replace(
                w, stacks=tuple(retag(s, k) for k, s in enumerate(w.stacks)), start=w.start + i, end=w.end + i
            )
            for w in data.windows
        )
        return dataclasses.replace(data, windows=windows)
    return data


def measure() -> tuple[float, int]:
    """Resident MiB and live Python objects, after a full collection."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20, len(gc.get_objects())


async def soak() -> list[tuple[int, float, int]]:
    tmp = tempfile.mkdtemp(prefix="ebpftop-soak-")
    settings = Settings(
        history=HISTORY,
        kiosk=True,
        audit_log=os.path.join(tmp, "audit.jsonl"),
        audit_key=os.path.join(tmp, "key"),
    )
    runtime = Runtime(settings, collectors=[])
    app = EbpftopApp(runtime)
    base = templates()
    t0 = time.time()
    points: list[tuple[int, float, int]] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        for i in range(SECONDS):
            for source, snap in base.items():
                if source == "marker":
                    continue  # a toast each second is not what a wall display sees
                data = churn(source, snap.data, i)
                runtime.bus.publish(dataclasses.replace(snap, seq=i + 1, time=t0 + i, data=data))
            await pilot.pause()  # let the app draw this second before the next
            if i % max(1, SECONDS // CHECKS) == 0 or i == SECONDS - 1:
                points.append((i + 1, *measure()))
    return points


def main() -> None:
    started = time.monotonic()
    points = asyncio.run(soak())
    took = time.monotonic() - started
    judged = [p for p in points if p[0] >= WARMUP * SECONDS]
    first, last = judged[0], judged[-1]
    per_day = (last[1] - first[1]) / max(1, last[0] - first[0]) * 86400
    rows = "\n".join(f"| {n} | {mb:.1f} | {objs} |" for n, mb, objs in points)
    body = f"""Machine: {machine()}. Command: `python bench/run.py soak` \
(`bench/soak_bench.py`{", --quick" if QUICK else ""}).
The kiosk app (read-only, 160x48, Textual's headless driver) was fed {SECONDS} one-second samples of every
demo source (tests/data/demo.rec), each second with new flow 5-tuples and pids and new trace ids in the
exemplars and profile tags, as fast as it drew them ({took:.0f} s for the run). Resident memory after a full
garbage collection, and the Python objects alive:

| seconds of data shown | RSS (MiB) | Python objects |
|---:|---:|---:|
{rows}

After the warm-up ({WARMUP:.0%} of the run): {last[1] - first[1]:+.1f} MiB and {last[2] - first[2]:+d} \
objects over
{last[0] - first[0]} seconds of data ({per_day:+.1f} MiB per day if that went on). Early growth is the bounded
parts filling: each source's history ({HISTORY} samples) and Textual's render caches (a DataTable keeps up to
10,000 rendered cells; their Rich segments are most of the objects added after the histories are full), which
level off. RSS also moves with the allocator (freed memory is not always returned to the system), so a MiB or
two either way is noise; a leak would show as a column that keeps rising at the same pace."""
    print(body)
    write_section("kiosk soak: memory over hours of data", body)


if __name__ == "__main__":
    main()
