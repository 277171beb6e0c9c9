"""`ebpftop snapshot --json`: what the panes would show, as one JSON document, no UI.

Runs the collectors for `--duration` seconds (see cli/headless.py for the exact
rule), prints the document, and exits 0 when every requested source delivered, 1 (with
`ebpftop: source NAME failed: ...` on stderr for each) when one did not, 2 on bad usage
or configuration. Never imports Textual: it must work where no terminal UI can.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ebpftop.cli.options import seconds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "snapshot",
        help="run the collectors without a UI and print what the panes would show",
        description="Run the collectors without a UI and print what the panes would show.",
        epilog="Exit status: 0 every requested source delivered; 1 a source failed (named on stderr) "
        "or --record could not start; 2 bad usage, unknown source or bad configuration.",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON document (otherwise one line per source)"
    )
    p.add_argument(
        "--duration",
        type=seconds(3600),
        default=None,
        metavar="S",
        help="collect at least S seconds (default 2), then up to 20 s more only for a source "
        "that has not reported yet",
    )
    p.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="NAME",
        help="report only this source (repeatable); asked-for sources that are off count as failed",
    )
    p.add_argument(
        "--bpf-stats",
        action="store_true",
        help="turn the kernel's BPF run-time stats on for the snapshot (a global switch, off again "
        "when it ends), so own_cost carries the run time per packet of ebpftop's programs",
    )
    # The global --record also works after the verb. SUPPRESS: when not given here, do
    # not overwrite what was given before the verb.
    p.add_argument(
        "--record", default=argparse.SUPPRESS, metavar="FILE", help="also record what was collected to FILE"
    )
    p.add_argument(
        "--record-max-mb", type=float, default=argparse.SUPPRESS, metavar="MB", help=argparse.SUPPRESS
    )
    p.set_defaults(func=run)


def _text_report(doc: dict[str, Any]) -> str:
    from ebpftop.core.untrusted import clean

    lines = []
    for name, entry in doc["sources"].items():
        h = entry["health"]
        age = "" if entry["age_s"] is None else f"  age {entry['age_s']:.1f}s"
        msg = f"  {clean(h['message'], 200)}" if h["message"] else ""
        lines.append(f"{clean(name):<10} {h['state']:<8}{age}{msg}")
    if "recorder" in doc:
        h = doc["recorder"]["health"]
        lines.append(f"{'recorder':<10} {h['state']:<8}  {clean(h['message'] or 'recording', 200)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli import headless
    from ebpftop.cli.options import load_or_exit
    from ebpftop.core.untrusted import clean

    settings = load_or_exit(args)
    duration = headless.DEFAULT_DURATION if args.duration is None else args.duration
    try:
        result = asyncio.run(
            headless.run_snapshot(settings, args.sources, duration=duration, bpf_stats=args.bpf_stats)
        )
    except headless.UnknownSource as exc:
        print(f"ebpftop: {clean(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        # ensure_ascii: untrusted strings reach the terminal as \u escapes, never raw.
        # default=str: a payload field JSON cannot hold is shown as text, never a traceback.
        print(json.dumps(result.doc, indent=2, allow_nan=False, default=str))
    else:
        print(_text_report(result.doc))
    sys.stdout.flush()
    for f in result.failures:
        print(f"ebpftop: source {clean(f.source)} failed: {clean(f.message, 300)}", file=sys.stderr)
    rec = result.doc.get("recorder")
    if rec and rec["health"]["state"] != "ok":
        print(f"ebpftop: {clean(rec['health']['message'], 300)}", file=sys.stderr)
    # A recording asked for but never made is a failure; one cut by its size bound is not.
    record_failed = bool(rec and rec["data"] and rec["data"]["state"] == "failed")
    return 1 if result.failures or record_failed else 0
