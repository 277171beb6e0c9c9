#!/usr/bin/env python3
"""Write screenshots/main-80x24.svg, main-160x48.svg and fleet-160x48.svg (`make screenshots`).

The app replays screenshots/lab.rec.gz, a recording of the real lab during a scripted
incident (scripts/make_lab_recording.py), paused at one moment read from the recording
itself: the first Flows sample SETTLE seconds after the canary's first FAIL verdict that
follows the incident marker (by then the canary's profiles cover the incident). Headless
and from the file alone (no clock, host or random input), so the pictures are the same
on every machine and change only when the screen or the recording does. No root, no
network. A recording without that incident (`--recording tests/data/demo.rec`) is shown
just after its first marker, else at its end.

When screenshots/fleet.rec.gz is there (the fleet view of the real lab while node2 loses
packets, scripts/make_fleet_recording.py), fleet-160x48.svg is the fleet app replaying
it, paused at the first fleet snapshot FLEET_SETTLE seconds after the first one that
ranks node2 first for retransmits; just as deterministic.

Usage: .venv/bin/python scripts/screenshots.py [--recording FILE] [--fleet-recording FILE] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "screenshots" / "lab.rec.gz"
FLEET_SOURCE = ROOT / "screenshots" / "fleet.rec.gz"
SIZES = ((80, 24), (160, 48))
FLEET_SIZE = (160, 48)
SETTLE = 12.0
FLEET_SETTLE = 3.0
FLEET_NODE = "node2"
SETTLE_FRAMES = 50


def failing(snapshot: Any) -> bool:
    """A canary snapshot with a service whose verdict is fail."""
    services = getattr(snapshot.data, "services", ())
    return snapshot.source == "canary" and any(str(s.verdict) == "fail" for s in services)


def anchor(frames: Sequence[Any]) -> Any | None:
    """The Flows snapshot the pictures show: the first one SETTLE s after the first FAIL
    verdict following the first marker; None when the recording has no such incident."""
    marker = next((s.time for s in frames if s.source == "marker"), None)
    if marker is None:
        return None
    fail = next((s.time for s in frames if s.time >= marker and failing(s)), None)
    if fail is None:
        return None
    return next((s for s in frames if s.source == "flows" and s.time >= fail + SETTLE), None)


def moment(replay: Any) -> int:
    """The tick to show: the one holding the anchor; else just after the first marker;
    else the last one."""
    shown = anchor(replay.frames)
    if shown is not None:
        return next(t for t in range(len(replay)) if shown in replay.tick_frames(t))
    marker_time = next((s.time for s in replay.frames if s.source == "marker"), None)
    if marker_time is None:
        return len(replay) - 1
    for tick in range(len(replay)):
        if replay.tick_time(tick) >= marker_time + 0.5:
            return tick
    return len(replay) - 1


def ranks_first(snapshot: Any) -> bool:
    """A fleet snapshot that ranks FLEET_NODE first, up, naming retransmits."""
    nodes = getattr(snapshot.data, "nodes", ())
    return (
        snapshot.source == "fleet"
        and bool(nodes)
        and nodes[0].name == FLEET_NODE
        and nodes[0].up is True
        and any("retransmits" in r for r in nodes[0].reasons)
    )


def fleet_anchor(frames: Sequence[Any]) -> Any | None:
    """The fleet snapshot the fleet picture shows: the first one FLEET_SETTLE s after the
    first that ranks FLEET_NODE first for retransmits; None when there is none."""
    first = next((s.time for s in frames if ranks_first(s)), None)
    if first is None:
        return None
    return next((s for s in frames if s.source == "fleet" and s.time >= first + FLEET_SETTLE), None)


def fleet_moment(replay: Any) -> int:
    """The tick holding the fleet anchor; else the last one."""
    shown = fleet_anchor(replay.frames)
    if shown is None:
        return len(replay) - 1
    return next(t for t in range(len(replay)) if shown in replay.tick_frames(t))


async def shoot(
    recording: pathlib.Path,
    size: tuple[int, int],
    out: pathlib.Path,
    home: pathlib.Path,
    fleet: bool = False,
) -> None:
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import ReplayRuntime
    from ebpftop.core.settings import Settings
    from ebpftop.tui.app import EbpftopApp
    from ebpftop.tui.fleet_app import FleetApp

    load_payload_types()
    settings = Settings(audit_log=str(home / "audit.jsonl"), audit_key=str(home / "audit.key"))
    runtime = ReplayRuntime.from_file(settings, str(recording))
    runtime.replay.paused = True
    runtime.replay.seek((fleet_moment if fleet else moment)(runtime.replay))
    app = (FleetApp if fleet else EbpftopApp)(runtime)
    title = f"ebpftop {'--fleet ' if fleet else ''}{size[0]}x{size[1]}"
    async with app.run_test(size=size) as pilot:
        # The footer's keys and late layout passes land a few frames after the data (more
        # on a loaded machine): the picture is the screen once two frames agree.
        shot = ""
        for _ in range(SETTLE_FRAMES):
            await pilot.pause(0.1)
            last, shot = shot, app.export_screenshot(title=title)
            if shot == last:
                break
        else:
            raise SystemExit(f"screenshots: the {title} screen still changed after {SETTLE_FRAMES} frames")
        out.write_text(shot, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recording", type=pathlib.Path, default=SOURCE)
    parser.add_argument("--fleet-recording", type=pathlib.Path, default=FLEET_SOURCE)
    parser.add_argument("--out-dir", type=pathlib.Path, default=ROOT / "screenshots")
    args = parser.parse_args(argv)
    if not args.recording.is_file():
        print(f"screenshots: no recording at {args.recording}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ebpftop-shots-") as home:
        for width, height in SIZES:
            out = args.out_dir / f"main-{width}x{height}.svg"
            asyncio.run(shoot(args.recording, (width, height), out, pathlib.Path(home)))
            print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
        if args.fleet_recording.is_file():
            width, height = FLEET_SIZE
            out = args.out_dir / f"fleet-{width}x{height}.svg"
            asyncio.run(shoot(args.fleet_recording, FLEET_SIZE, out, pathlib.Path(home), fleet=True))
            print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
