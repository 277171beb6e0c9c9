"""The default verb: open the dashboard."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_UP, load_or_exit

    # Exits 2, one cleaned line per problem; --lab brings the lab up when it is not.
    settings = load_or_exit(args, lab=LAB_UP)
    from ebpftop.cli.wiring import dashboard_runtime
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(dashboard_runtime(settings))
    app.run()
    return app.return_code or 0
