"""`ebpftop doctor`: is this machine ready for the collectors, and if not, the fix."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpftop.cli.doctor import Check


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check root/capabilities, BPF, kernel headers, mounts, tcx, ring buffer, endpoints",
        description="Check what the collectors need and print each item with ok / MISSING / warn "
        "and the fix. Exit 0 when every essential check passes, 1 otherwise, 2 on bad configuration.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=run)


def format_checks(checks: Iterable[Check], columns: int = 80) -> str:
    """One block per check: status, name, detail, and the fix when it is not ok,
    wrapped to `columns` so it reads on an 80-column SSH session."""
    from ebpftop.core.untrusted import clean

    name_w = max((len(c.name) for c in checks), default=0)
    indent = " " * (8 + 1 + name_w + 2)

    def wrap(text: str, first: str) -> list[str]:
        return textwrap.wrap(
            text,
            width=max(columns, len(indent) + 20),
            initial_indent=first,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        ) or [first]

    lines = []
    for c in checks:
        lines += wrap(clean(c.detail), f"{c.label:<8} {clean(c.name):<{name_w}}  ")
        if c.ok is not True and c.fix:
            lines += wrap("fix: " + clean(c.fix), indent)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli import doctor
    from ebpftop.cli.options import load_or_exit
    from ebpftop.core import config

    settings = load_or_exit(args)
    files = config.config_files(getattr(args, "config", None), os.environ)
    checks = [doctor.check_config(files), *doctor.run_checks(settings)]
    ok = doctor.passed(checks)
    if getattr(args, "json", False):
        out = {
            "kernel": platform.release(),
            "ok": ok,
            "checks": [
                {
                    "name": c.name,
                    "status": c.label.lower(),
                    "essential": c.essential,
                    "detail": c.detail,
                    "fix": c.fix,
                }
                for c in checks
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        from ebpftop.core.untrusted import clean

        print(f"ebpftop doctor: kernel {clean(platform.release())}, {platform.machine()}")
        # Wrap for a terminal; piped into grep or a ticket, one line per item reads better.
        columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000
        print(format_checks(checks, columns))
        missing = [c.name for c in checks if c.essential and c.ok is False]
        optional = [c.name for c in checks if not c.essential and c.ok is False]
        summary = "all essential checks pass" if ok else f"not ready: {', '.join(missing)}"
        if optional:
            summary += f" (optional, missing: {', '.join(optional)})"
        print(summary)
    return 0 if ok else 1
