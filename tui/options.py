"""Global command-line options and how they become Settings.

Flags default to None so that "not given" is distinguishable from a value: only given
flags override the files and the environment (flags > env > user file > system file).
"""

from __future__ import annotations

import argparse

from ebpftop.collectors.settings import Settings


def add_global_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dashboard options")
    g.add_argument("--config", metavar="FILE", help="read this TOML file instead of /etc/ebpftop and ~/.config/ebpftop")
    g.add_argument("--theme", help="ebpftop-dark (default), ebpftop-light, ebpftop-high-contrast, ebpftop-kiosk")
    g.add_argument("--kiosk", "--read-only", dest="kiosk", action="store_const", const=True, default=None,
                   help="read-only wall display: no action can run")
    g.add_argument("--refresh", type=float, metavar="SECONDS", help="seconds between samples (default 1)")
    g.add_argument("--record", metavar="FILE", help="append everything shown to FILE (replay it with `ebpftop replay FILE`)")
    g.add_argument("--record-max-mb", type=float, metavar="MB", help="stop recording at this size (default 256)")
    g.add_argument("--audit-log", metavar="FILE", help="audit log path (default /var/log/ebpftop/audit.jsonl)")
    g.add_argument("--iface", dest="ifaces", action="append", metavar="NAME", help="watch this interface (repeatable)")
    g.add_argument("--prometheus-url", metavar="URL", help="Prometheus HTTP API for the canary pane")
    g.add_argument("--lab", action="store_const", const=True, default=None, help="wire the dashboard to `ebpftop lab`")


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The Settings fields the user set on the command line."""
    names = {f for f in Settings.__dataclass_fields__}
    out: dict[str, object] = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Files, then environment, then flags. Raises config.ConfigError on bad input."""
    from ebpftop.collectors import config

    return config.load_settings(flag_overrides(args), config_path=getattr(args, "config", None))
