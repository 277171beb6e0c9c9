"""Global command-line options and how they become Settings.

Flags default to None so that "not given" is distinguishable from a value: only given
flags override the files and the environment (flags > env > user file > system file).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ebpftop.core.settings import Settings

AGENT_SOCKET = "/run/ebpftop/agent.sock"  # where `ebpftop agent` listens unless told otherwise


def seconds(maximum: float, *, zero: bool = True) -> Callable[[str], float]:
    """An argparse type: a number of seconds, 0 (or more than 0 when not `zero`) to `maximum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value < 0 or value > maximum or (value == 0 and not zero):
            low = "between 0 and" if zero else "more than 0 and at most"
            raise argparse.ArgumentTypeError(f"must be {low} {maximum:g} seconds, got {text}")
        return value

    return parse


class PrintAndExit(argparse.Action):
    """A flag that prints one text and exits 0, before any other argument is checked."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def text(self, parser: argparse.ArgumentParser) -> str:
        raise NotImplementedError

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(self.text(parser))
        parser.exit(0)


def lab_instance(text: str) -> str:
    """An argparse type: a lab instance name as `ebpftop lab --instance` takes it."""
    from ebpftop.lab.layout import NAME_RE

    if not NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a lab instance name: use 1-4 characters of a-z and 0-9"
        )
    return text


class _HelpConfig(PrintAndExit):
    """`--help-config`: every setting as a commented config.toml."""

    def text(self, parser: argparse.ArgumentParser) -> str:
        from ebpftop.core import config

        return config.describe(set(parser._option_string_actions))


class _Fleet(argparse.Action):
    """`--fleet [URL]`: the fleet view; the URL, when given, is the `fleet_url` setting."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        namespace.fleet = True
        if isinstance(values, str):
            namespace.fleet_url = values


def add_global_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dashboard options")
    g.add_argument(
        "--config", metavar="FILE", help="read this TOML file instead of /etc/ebpftop and ~/.config/ebpftop"
    )
    g.add_argument(
        "--help-config",
        action=_HelpConfig,
        help="print every setting (file key, environment variable, flag, default) and exit",
    )
    g.add_argument(
        "--theme", help="ebpftop-dark (default), ebpftop-light, ebpftop-high-contrast, ebpftop-kiosk"
    )
    g.add_argument(
        "--kiosk",
        "--read-only",
        dest="kiosk",
        action="store_const",
        const=True,
        default=None,
        help="read-only wall display: no action can run",
    )
    g.add_argument("--refresh", type=float, metavar="SECONDS", help="seconds between samples (default 1)")
    g.add_argument(
        "--record",
        metavar="FILE",
        help="append everything shown to FILE (replay it with `ebpftop replay FILE`)",
    )
    g.add_argument(
        "--record-max-mb", type=float, metavar="MB", help="stop recording at this size (default 256)"
    )
    g.add_argument(
        "--audit-log", metavar="FILE", help="audit log path (default /var/log/ebpftop/audit.jsonl)"
    )
    g.add_argument(
        "--iface", dest="ifaces", action="append", metavar="NAME", help="watch this interface (repeatable)"
    )
    g.add_argument("--prometheus-url", metavar="URL", help="Prometheus HTTP API for the canary pane")
    g.add_argument(
        "--lab",
        action="store_const",
        const=True,
        default=None,
        help="wire the dashboard (bringing the lab up) and snapshot, doctor, rollback (a running lab) "
        "to `ebpftop lab`",
    )
    g.add_argument(
        "--lab-instance",
        type=lab_instance,
        metavar="NAME",
        help="like --lab, with the running lab instance NAME (`ebpftop lab up --instance NAME`)",
    )
    g.add_argument(
        "--auto-rollback",
        action="store_const",
        const=True,
        default=None,
        help="roll back on its own when the canary verdict stays fail (cancellable countdown)",
    )
    g.add_argument(
        "--pprof",
        dest="pprof_urls",
        action="append",
        metavar="URL",
        help="pprof endpoint to profile (Go net/http/pprof, e.g. http://127.0.0.1:6060; repeatable)",
    )
    g.add_argument(
        "--profile-hz",
        dest="profile_hz",
        type=int,
        metavar="HZ",
        help="BPF CPU sampling frequency on every CPU (default 49; 0 turns the sampler off)",
    )
    f = parser.add_argument_group("fleet options (also in [fleet] of the config)")
    f.add_argument(
        "--fleet",
        action=_Fleet,
        nargs="?",
        metavar="PROM_URL",
        help="the fleet view: every node's agent, read from the Prometheus that scrapes them "
        "(the URL, or [fleet] prometheus_url)",
    )
    f.add_argument(
        "--fleet-filter",
        metavar="TERMS",
        help="open the fleet view filtered, e.g. 'service:checkout namespace:shop' (`/` changes it)",
    )
    a = parser.add_argument_group("agent options (`ebpftop agent` collects once for many viewers)")
    a.add_argument(
        "--connect",
        metavar="ADDR",
        help="view the agent at ADDR (a unix socket path, or HOST:PORT) instead of collecting here",
    )
    a.add_argument(
        "--token-file",
        dest="connect_token_file",
        metavar="FILE",
        help="the agent's token, read from FILE (an agent listening beyond loopback asks for one)",
    )
    a.add_argument(
        "--no-agent",
        action="store_true",
        help=f"collect here even when a local agent answers on {AGENT_SOCKET}",
    )
    c = parser.add_argument_group("canary options (also in [canary] of the config)")
    c.add_argument(
        "--canary-p99-max",
        type=float,
        metavar="SECONDS",
        help="fail when canary p99 stays above (default 1.2)",
    )
    c.add_argument(
        "--canary-error-ratio-max",
        type=float,
        metavar="RATIO",
        help="fail when canary 5xx ratio stays above (default 0.005)",
    )
    c.add_argument(
        "--canary-p99-ratio-max",
        type=float,
        metavar="X",
        help="fail when canary p99 / stable p99 stays above (default 1.2)",
    )
    c.add_argument(
        "--canary-persist",
        type=int,
        metavar="N",
        help="breaching evaluations in a row before fail (default 3)",
    )
    c.add_argument(
        "--canary-min-requests",
        type=int,
        metavar="N",
        help="fewer canary requests in the window is no data (default 20)",
    )
    c.add_argument("--canary-window", metavar="DURATION", help="evaluation window, e.g. 1m, 5m (default 1m)")
    c.add_argument(
        "--canary-interval", type=float, metavar="SECONDS", help="seconds between evaluations (default 5)"
    )
    c.add_argument(
        "--canary-timeout", type=float, metavar="SECONDS", help="seconds each query may take (default 5)"
    )
    c.add_argument("--canary-services-file", metavar="FILE", help="TOML file of [[service]] tables")
    c.add_argument(
        "--prometheus-token-file", metavar="FILE", help="bearer token for Prometheus, read from FILE"
    )
    c.add_argument("--prometheus-user", metavar="USER", help="basic-auth user for Prometheus")
    c.add_argument("--prometheus-password-file", metavar="FILE", help="basic-auth password, read from FILE")
    c.add_argument(
        "--prometheus-ca-file", metavar="FILE", help="CA bundle (PEM) for Prometheus' TLS certificate"
    )


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
    from ebpftop.core import config

    return config.load_settings(flag_overrides(args), config_path=getattr(args, "config", None))


# How a verb takes `--lab` (or [lab] enabled), for load_or_exit.
LAB_UP = "up"  # bring the lab up when it is not (the dashboard)
LAB_RUNNING = "running"  # use the running lab; exit 2 when there is none
LAB_UNUSED = None  # the verb reads no setting the lab changes


def load_or_exit(args: argparse.Namespace, *, lab: str | None = LAB_RUNNING) -> Settings:
    """Settings for a verb, or exit 2 with every configuration problem on stderr.

    Call this before touching anything (files, BPF, network): bad configuration must
    change nothing. With `--lab` the settings come back wired to the lab (`with_lab`),
    the same way for every verb that passes `lab`.
    """
    from ebpftop.core.config import ConfigError
    from ebpftop.core.untrusted import clean

    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ebpftop: {clean(problem)}", file=sys.stderr)
        raise SystemExit(2) from None
    instance = getattr(args, "lab_instance", None)
    if (settings.lab or instance) and lab is not LAB_UNUSED:
        # A named instance is used only when it runs: its subnet and ports were chosen
        # at its `lab up`, and the default ones may be the default lab's.
        settings = with_lab(settings, bring_up=lab == LAB_UP and instance is None, instance=instance)
    return settings


# The lab instance `--lab` means; tests point it at a state file of their own.
LAB_CONFIG = None


def with_lab(settings: Settings, *, bring_up: bool, instance: str | None = None) -> Settings:
    """`--lab`: the settings pointed at the lab's Prometheus, interfaces and HAProxy.

    Only the dashboard brings the lab up (`bring_up`): a one-shot verb building
    namespaces and servers as a side effect would surprise; it uses the running lab
    and exits 2 when there is none. Exits 1 when the lab cannot start. `instance`:
    that lab instance instead of the default one (`--lab-instance`).
    """
    from ebpftop.core.untrusted import clean
    from ebpftop.lab import manager
    from ebpftop.lab.errors import LabError
    from ebpftop.lab.layout import LabConfig
    from ebpftop.lab.state import StateFileError

    config = LAB_CONFIG or LabConfig()
    if instance is not None:
        config = dataclasses.replace(config, name=instance)

    def say(msg: str) -> None:
        print(f"ebpftop lab: {clean(msg)}", file=sys.stderr, flush=True)

    if bring_up:
        try:
            return manager.lab_settings(settings, config, say=say)
        except LabError as exc:
            print(f"ebpftop: the lab could not start: {clean(exc)}", file=sys.stderr)
            raise SystemExit(1) from None
    try:
        ep = manager.endpoints(config)
    except StateFileError as exc:
        flag = "--lab" if instance is None else f"--lab-instance {instance}"
        print(f"ebpftop: {flag}: {clean(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    if ep is None:
        if instance is not None:
            print(
                f"ebpftop: --lab-instance {instance}: lab instance {instance} is not up "
                f"(run `ebpftop lab up --instance {instance}`)",
                file=sys.stderr,
            )
        else:
            print(
                "ebpftop: --lab: the lab is not up (run `ebpftop lab up`, or `ebpftop --lab` to open the "
                "dashboard, which brings it up)",
                file=sys.stderr,
            )
        raise SystemExit(2)
    return manager.wire_settings(settings, ep)


def read_token(path: str, flag: str) -> str:
    """A token from a file (first line, stripped), or exit 2 saying what is wrong."""
    from ebpftop.core.untrusted import clean

    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"ebpftop: {flag} {clean(path)}: {clean(why)}", file=sys.stderr)
        raise SystemExit(2) from None
    if len(token) < 16:
        print(f"ebpftop: {flag} {clean(path)}: the token must be at least 16 characters", file=sys.stderr)
        raise SystemExit(2)
    return token
