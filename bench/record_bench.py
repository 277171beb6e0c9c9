"""Record/replay figures: what recording costs the event loop, file growth, read and seek.

The recorder runs inside a bus callback on the UI's event loop, so its cost per
snapshot is what matters; the reader and `Replayer.seek` (the `[` key) decide how large
a recording stays usable. Snapshots are the demo recording's (tests/data/demo.rec:
host, flows with 8 flows, canary, profiles), repeated with shifted times.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import statistics
import tempfile
import time
import tracemalloc

from results import machine, write_section

from ebpftop.collectors.registry import load_payload_types
from ebpftop.core.bus import Bus
from ebpftop.core.record import MB, Recorder
from ebpftop.core.replay import Replayer, read_recording
from ebpftop.core.store import Store

load_payload_types()  # read_recording decodes typed only what is registered

DEMO = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "demo.rec"
N_FRAMES = int(os.environ.get("BENCH_RECORD_FRAMES", "20000"))


def frames_like_demo(n: int):
    demo = read_recording(str(DEMO)).frames
    span = demo[-1].time - demo[0].time + 1
    out = []
    i = 0
    while len(out) < n:
        for f in demo:
            out.append(dataclasses.replace(f, time=f.time + i * span))
        i += 1
    return out[:n], demo, span


def per_second_batches(frames, span_start):
    """The demo's snapshots grouped by the second they were taken in."""
    batches: dict[int, list] = {}
    for f in frames:
        batches.setdefault(int(f.time - span_start), []).append(f)
    return [batches[k] for k in sorted(batches)]


def recorder_costs(frames, tmp):
    """Per-snapshot cost (encode + buffer) and the cost of the once-a-second flush."""
    rows = []
    for suffix in ("rec", "rec.gz"):
        path = os.path.join(tmp, f"big.{suffix}")
        rec = Recorder(path, 4096 * MB, flush_interval=1e9)  # flushes driven below, as the clock would
        rec.open()
        calls: dict[str, list[int]] = {}
        flushes = []
        for batch in per_second_batches(frames, frames[0].time):
            for f in batch:
                t0 = time.perf_counter_ns()
                rec(f)
                calls.setdefault(f.source, []).append(time.perf_counter_ns() - t0)
            t0 = time.perf_counter_ns()
            rec.flush()
            flushes.append(time.perf_counter_ns() - t0)
        rec.close()
        rows.append((suffix, calls, flushes, os.path.getsize(path)))
    return rows


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    frames, _, span = frames_like_demo(N_FRAMES)
    tmp = tempfile.mkdtemp(prefix="ebpftop-bench-")
    rows = recorder_costs(frames, tmp)
    plain = os.path.join(tmp, "big.rec")
    plain_size = os.path.getsize(plain)

    t0 = time.perf_counter()
    got = read_recording(plain)
    read_s = time.perf_counter() - t0
    assert len(got.frames) == N_FRAMES and got.stopped_at is None

    small = os.path.join(tmp, "small.rec")
    rec = Recorder(small, 4096 * MB)
    rec.open()
    for f in frames[:5000]:
        rec(f)
    rec.close()
    tracemalloc.start()
    read_recording(small)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    bus, store = Bus(), Store(300)
    bus.subscribe(store)
    rep = Replayer(got.frames, bus=bus, store=store)
    seeks = []
    for target in (len(rep) - 1, len(rep) // 2, 10, len(rep) - 2):
        t0 = time.perf_counter()
        rep.seek(target)
        seeks.append(time.perf_counter() - t0)

    per_hour = os.path.getsize(DEMO) / span * 3600
    lines = [
        f"Machine: {machine()}. {N_FRAMES} snapshots shaped like tests/data/demo.rec "
        "(host; flows with 8 flows; canary; profiles), fed one recorded second at a time.",
        "",
        "Recorder, on the event loop (bus callback = encode to JSON + buffer; flush = once a second):",
        "",
        "| file | source | callback mean | callback p99 | one-second flush mean | flush max | file size |",
        "|---|---|---|---|---|---|---|",
    ]
    for suffix, calls, flushes, size in rows:
        for i, (source, ns) in enumerate(sorted(calls.items())):
            flush = (
                (
                    f"{statistics.mean(flushes) / 1e3:.0f} µs",
                    f"{max(flushes) / 1e6:.1f} ms",
                    f"{size / MB:.1f} MB",
                )
                if i == 0
                else ("", "", "")
            )
            lines.append(
                f"| .{suffix} | {source} "
                f"| {statistics.mean(ns) / 1e3:.0f} µs | {pct(ns, 0.99) / 1e3:.0f} µs | "
                + " | ".join(flush)
                + " |"
            )
    lines += [
        "",
        f"- Growth with every demo source at 1 Hz: {per_hour / MB:.0f} MB/hour uncompressed, so the default "
        f"256 MB bound lasts about {256 * MB / per_hour:.0f} h (gzip: "
        f"about {rows[0][3] / max(1, rows[1][3]):.0f}x smaller).",
        f"- read_recording: {N_FRAMES} snapshots ({plain_size / MB:.0f} MB) in {read_s:.1f} s "
        f"({read_s / N_FRAMES * 1e3:.2f} ms per snapshot, "
        "almost all of it typed decoding in codec.from_jsonable); "
        f"memory {peak / 5000 / 1024:.1f} KB per loaded snapshot.",
        f"- Replayer.seek (the `[` key: rebuild the store, republish) over {len(rep)} steps: "
        f"max {max(seeks) * 1000:.0f} ms.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("record/replay", body)
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
