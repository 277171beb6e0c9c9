"""The default verb: open the dashboard."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ebpftop.collectors.config import ConfigError
    from ebpftop.tui.options import settings_from_args

    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"ebpftop: {exc}", file=sys.stderr)
        return 2
    from ebpftop.collectors.runtime import Runtime
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(Runtime(settings))
    app.run()
    return app.return_code or 0
