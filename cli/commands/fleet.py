"""`ebpftop --fleet [PROM_URL]`: the fleet view instead of this node's dashboard.

Not a verb: a way to open the dashboard (like `--connect`), so it takes the
dashboard's options (theme, kiosk, record, refresh). It needs no root: it reads only
Prometheus.
"""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_UNUSED, load_or_exit
    from ebpftop.cli.wiring import fleet_runtime
    from ebpftop.collectors.fleet.filter import FilterError, parse
    from ebpftop.core.untrusted import clean

    settings = load_or_exit(args, lab=LAB_UNUSED)
    if not settings.fleet_url:
        print(
            "ebpftop: --fleet: no Prometheus URL: give it (`ebpftop --fleet http://prometheus:9090`) "
            "or set [fleet] prometheus_url in the config",
            file=sys.stderr,
        )
        return 2
    try:
        parse(settings.fleet_filter)
    except FilterError as exc:
        print(f"ebpftop: --fleet-filter / [fleet] filter: {clean(exc)}", file=sys.stderr)
        return 2
    from ebpftop.tui.fleet_app import FleetApp

    app = FleetApp(fleet_runtime(settings))
    app.run()
    return app.return_code or 0
