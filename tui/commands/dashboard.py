"""The default verb: open the dashboard."""

from __future__ import annotations

import argparse
import sys


def _wire_lab(settings):
    """`--lab`: bring the lab up when it is not, and point the sources at it."""
    from ebpftop.collectors.lab import lab_settings
    from ebpftop.collectors.lab.errors import LabError
    from ebpftop.tui.text import clean

    def say(msg: str) -> None:
        print(f"ebpftop lab: {clean(msg)}", file=sys.stderr, flush=True)

    try:
        return lab_settings(settings, say=say)
    except LabError as exc:
        print(f"ebpftop: the lab could not start: {clean(exc)}", file=sys.stderr)
        raise SystemExit(1) from None


def run(args: argparse.Namespace) -> int:
    from ebpftop.tui.options import load_or_exit

    settings = load_or_exit(args)  # exits 2, one cleaned line per problem
    if settings.lab:
        settings = _wire_lab(settings)
    from ebpftop.collectors.runtime import Runtime
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(Runtime(settings))
    app.run()
    return app.return_code or 0
