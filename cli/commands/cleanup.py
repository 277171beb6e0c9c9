"""`ebpftop cleanup`: list and remove the attachments ebpftop made.

Covers the flows datapath (policy rules, pinned on purpose, are added by their own
module). Removes TC filters and pins left by an ebpftop that is no longer running;
lists the attachments of running ones (they go when that process exits) and removes
those too with --all (in this network namespace). Exit 0 when nothing failed, 1 when
something could not be removed, 2 when not root.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cleanup",
        help="remove TC filters, links and pins ebpftop left behind (and list the live ones)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--all",
        dest="everything",
        action="store_true",
        help="also detach the attachments of ebpftop processes that are still running",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ebpftop.collectors.flows import leftovers
    from ebpftop.core.untrusted import clean

    if os.geteuid() != 0:
        print(
            "ebpftop cleanup: needs root (BPF links and TC filters); run `sudo ebpftop cleanup`",
            file=sys.stderr,
        )
        return 2
    from ebpftop.cli.options import LAB_UNUSED, load_or_exit
    from ebpftop.collectors.rules import leftovers as rules_leftovers

    settings = load_or_exit(args, lab=LAB_UNUSED)
    # Rules first: enforcement that stops is what the operator most needs to see.
    items: list[rules_leftovers.Item | leftovers.Item] = [
        *rules_leftovers.sweep(settings.rules_pin_dir, settings.rules_state_dir, dry_run=args.dry_run),
        *leftovers.sweep(everything=args.everything, dry_run=args.dry_run),
    ]
    if not items:
        print("nothing of ebpftop's is attached or pinned")
        return 0
    for item in items:
        holders = getattr(item, "holders", ())
        who = f" (held by pid {', '.join(map(str, holders))})" if holders else ""
        print(f"{item.action:<14} {item.kind:<10} {clean(item.what, 300)}{who}")
    return 1 if any(i.action.startswith("failed") for i in items) else 0
