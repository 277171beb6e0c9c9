"""`ebpftop` command line: the dashboard by default, verbs for everything else.

Each verb lives in `tui/commands/<verb>.py` with `register(subparsers)` and a `run(args)`
that returns the exit code; this file only wires them up, so verbs are added without
touching each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Verb modules under ebpftop.tui.commands, in --help order.
VERBS = ("snapshot", "replay", "audit", "doctor", "lab", "cleanup", "rollback", "rules", "profile")


def build_parser() -> argparse.ArgumentParser:
    from . import options

    parser = argparse.ArgumentParser(
        prog="ebpftop",
        description="Incident dashboard for a Linux node: flows, rule hits, canary state, profile tags.",
    )
    options.add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        importlib.import_module(f"ebpftop.tui.commands.{verb}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        from .commands import dashboard

        func = dashboard.run
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
