"""The default verb: open the dashboard."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpftop.core.runtime import Runtime
    from ebpftop.core.settings import Settings


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import LAB_UP, load_or_exit

    # Exits 2, one cleaned line per problem; --lab brings the lab up when it is not.
    settings = load_or_exit(args, lab=LAB_UP)
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(runtime_for(args, settings))
    app.run()
    return app.return_code or 0


def runtime_for(args: argparse.Namespace, settings: Settings) -> Runtime:
    """An agent's stream (`--connect`, or the local agent when one answers), else
    collecting here. Exits 2 on a bad address or token file."""
    from ebpftop.cli.options import AGENT_SOCKET, read_token
    from ebpftop.cli.wiring import dashboard_runtime, viewer_runtime
    from ebpftop.core.stream_client import agent_answers, parse_address
    from ebpftop.core.untrusted import clean

    address = getattr(args, "connect", None)
    token_file = getattr(args, "connect_token_file", None)
    token = read_token(token_file, "--token-file") if token_file else None
    if address is not None:
        try:
            parse_address(address)
        except ValueError as exc:
            print(f"ebpftop: --connect: {clean(exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        return viewer_runtime(settings, address, token)
    # The lab wires sources (its interfaces, Prometheus, services) a node agent does not
    # watch: --lab collects here.
    lab = settings.lab or getattr(args, "lab_instance", None)
    if not getattr(args, "no_agent", False) and not lab and agent_answers(AGENT_SOCKET) is not None:
        return viewer_runtime(settings, AGENT_SOCKET, token)
    return dashboard_runtime(settings)
