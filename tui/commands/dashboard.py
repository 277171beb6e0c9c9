"""The default verb: open the dashboard."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ebpftop.tui.options import load_or_exit

    settings = load_or_exit(args)  # exits 2, one cleaned line per problem
    from ebpftop.collectors.runtime import Runtime
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(Runtime(settings))
    app.run()
    return app.return_code or 0
