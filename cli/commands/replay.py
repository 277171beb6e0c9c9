"""`ebpftop replay FILE`: show a recording in the dashboard, without root.

Space pauses, `[` / `]` step one sample back / forward, `<` / `>` halve / double the
speed (0.25x..16x). A truncated or corrupt file plays up to the damage and the screen
says where it stopped. `--summary` prints what the file holds instead of opening the UI.
Exit 2 when the file cannot be replayed at all (missing, not a recording, no snapshot
before the damage), with `FILE:LINE: reason` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpftop.core.replay import ReplayRuntime


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        help="show a recording made with --record (no root needed)",
        description="Show a recording in the dashboard, without root. Space pauses, [ and ] step "
        "one sample back and forward, < and > halve and double the speed (0.25x-16x). "
        "A damaged file plays up to the damage and says where it stopped.",
        epilog="Exit status: 2 when the file cannot be replayed at all (missing, not a recording).",
    )
    p.add_argument("file", metavar="FILE", help="a file written by `ebpftop --record FILE` (.gz works too)")
    p.add_argument(
        "--summary", action="store_true", help="print the sources, duration and any damage, then exit (no UI)"
    )
    p.add_argument("--paused", action="store_true", help="start paused at the first sample")
    p.set_defaults(func=run)


def summary(runtime: ReplayRuntime) -> str:
    from ebpftop.core.untrusted import clean

    rep = runtime.replay
    rec = runtime.recording
    hosts = sorted({str(h.get("host", "?")) for h in rec.headers})
    lines = [
        f"file: {clean(runtime.path)}",
        f"hosts: {clean(', '.join(hosts))}",
        f"sessions: {len(rec.headers)}",
        f"snapshots: {len(rec.frames)} in {len(rep)} steps over {rep.duration:.1f} s",
        "sources: "
        + ", ".join(f"{clean(s)} ({sum(1 for f in rec.frames if f.source == s)})" for s in rep.sources),
    ]
    if rep.damage:
        lines.append(f"stopped at {clean(rep.damage)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_UNUSED, load_or_exit
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import ReplayError, ReplayRuntime
    from ebpftop.core.untrusted import clean

    settings = load_or_exit(args, lab=LAB_UNUSED)
    if settings.record:
        print("ebpftop: --record is ignored during replay", file=sys.stderr)
    try:
        size = os.path.getsize(args.file)
    except OSError:
        size = 0  # from_file says why
    if size > 4 * 1024 * 1024:
        # Loading decodes every snapshot (about 1 ms each, bench/RESULTS.md): say why it waits.
        print(f"ebpftop: reading {clean(args.file)} ({size / 2**20:.0f} MB)…", file=sys.stderr, flush=True)
    load_payload_types()  # no collector runs in a replay: their payload types decode it
    try:
        runtime = ReplayRuntime.from_file(settings, args.file)
    except ReplayError as exc:
        print(f"ebpftop: cannot replay: {clean(exc)}", file=sys.stderr)
        return 2
    if args.summary:
        print(summary(runtime))
        return 0
    damage = runtime.recording.stopped_at
    where = f"{clean(args.file)}:{damage.line}: {clean(damage.reason)}" if damage else ""
    if not runtime.recording.frames:
        print(
            f"ebpftop: cannot replay: {where} (no snapshot before it)"
            if damage
            else f"ebpftop: cannot replay: {clean(args.file)} holds no snapshots",
            file=sys.stderr,
        )
        return 2
    if damage:
        # Said before the UI takes the screen, and again on it.
        print(f"ebpftop: {where}; replaying the snapshots before it", file=sys.stderr)
    runtime.replay.paused = bool(args.paused)
    from ebpftop.tui.app import EbpftopApp
    from ebpftop.tui.fleet_app import FleetApp

    # a recording of the fleet view (`ebpftop --fleet URL --record FILE`) replays in it
    app = (FleetApp if "fleet" in runtime.replay.sources else EbpftopApp)(runtime)
    app.run()
    return app.return_code or 0
