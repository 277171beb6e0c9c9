#!/usr/bin/env python3
"""Write screenshots/main-80x24.svg and screenshots/main-160x48.svg (`make screenshots`).

The app replays tests/data/demo.rec, paused at the moment just after the incident
marker (CPU spike), headless, so the pictures are the same on every machine and change
only when the screen or the demo recording does. No root, no network.

Usage: .venv/bin/python scripts/screenshots.py [--recording FILE] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = ((80, 24), (160, 48))


def moment(replay) -> int:
    """The tick to show: just after the first marker, else the last one."""
    marker_time = next((s.time for s in replay.frames if s.source == "marker"), None)
    if marker_time is None:
        return len(replay) - 1
    for tick in range(len(replay)):
        if replay.tick_time(tick) >= marker_time + 0.5:
            return tick
    return len(replay) - 1


async def shoot(
    recording: pathlib.Path, size: tuple[int, int], out: pathlib.Path, home: pathlib.Path
) -> None:
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import ReplayRuntime
    from ebpftop.core.settings import Settings
    from ebpftop.tui.app import EbpftopApp

    load_payload_types()
    settings = Settings(audit_log=str(home / "audit.jsonl"), audit_key=str(home / "audit.key"))
    runtime = ReplayRuntime.from_file(settings, str(recording))
    runtime.replay.paused = True
    runtime.replay.seek(moment(runtime.replay))
    app = EbpftopApp(runtime)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        out.write_text(app.export_screenshot(title=f"ebpftop {size[0]}x{size[1]}"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", type=pathlib.Path, default=ROOT / "tests" / "data" / "demo.rec")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
