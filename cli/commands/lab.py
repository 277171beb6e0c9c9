"""`ebpftop lab up | down | status | inject`: a small real system to watch (needs root)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

from ebpftop.core.untrusted import clean

if TYPE_CHECKING:
    from ebpftop.lab.layout import LabConfig
    from ebpftop.lab.manager import LabStatus

EXIT_NOT_UP = 3  # like `systemctl status` for a unit that is not running


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lab",
        help="bring up / tear down a small real system to watch (namespaces, services, HAProxy, Prometheus)",
        description="A small real system on this machine: stable and canary HTTP services behind HAProxy, "
        "a load generator, Prometheus scraping them, all in network namespaces on a private "
        "subnet. Needs root.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--instance",
        default="lab",
        metavar="NAME",
        help="lab instance name, 1-4 of a-z0-9 (default lab); instances coexist",
    )
    sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    u = sub.add_parser(
        "up", parents=[common], help="start the lab (cleaning leftovers of a crashed one first)"
    )
    u.add_argument("--rate", type=float, default=20.0, help="load generator requests/s (default 20)")
    u.add_argument(
        "--weights", default="90/10", metavar="STABLE/CANARY", help="HAProxy weights (default 90/10)"
    )
    u.add_argument(
        "--prometheus-port", type=int, default=19090, help="Prometheus on 127.0.0.1:PORT (default 19090)"
    )
    u.add_argument(
        "--subnet", default="198.18.0.0/24", help="private /24 for the lab (default 198.18.0.0/24)"
    )
    u.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="also a fleet of N nodes (1-8), each an ebpftop agent with its own traffic, scraped by "
        "the lab's Prometheus as job ebpftop (default 0: none)",
    )
    sub.add_parser("down", parents=[common], help="stop the lab and remove everything it created")
    s = sub.add_parser("status", parents=[common], help="each part with its health")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    i = sub.add_parser(
        "inject",
        parents=[common],
        help="change a service's fault knobs, take a service down, or flood its link",
        description="Examples: `ebpftop lab inject canary latency=300ms errors=2%% cpu=on`, "
        "`ebpftop lab inject canary reset` (knobs not named keep their value); "
        "`ebpftop lab inject stable down` / `... stable up` (stop / start the service's process); "
        "`ebpftop lab inject flood on` / `... flood rate=5MB/s` / `... flood off` (UDP from the "
        "client's namespace to the stable's, default 2 MB/s); with `lab up --nodes N`: "
        "`ebpftop lab inject node2 retransmits=on` (or =5%%, =off: TCP loss in the node's pod), "
        "`... node2 flood=on` (=500KB/s, =off), `... node2 agent=down` (=up).",
    )
    i.add_argument("variant", metavar="TARGET", help="canary, stable, flood, or node<K> (with --nodes)")
    i.add_argument(
        "terms",
        nargs="+",
        metavar="TERM",
        help="for canary/stable: latency=<0-10s, e.g. 300ms>, errors=<0-100%%>, cpu=on|off, reset, "
        "down or up; for flood: on, off or rate=<0.01-50MB/s>; for node<K>: retransmits=on|off|<P>%%, "
        "flood=on|off|<rate>, agent=down|up",
    )
    p.set_defaults(func=run)


def _err(message: str) -> None:
    print(f"ebpftop lab: {clean(message)}", file=sys.stderr)


def _say(message: str) -> None:
    print(clean(message), flush=True)


def _config(args: argparse.Namespace) -> LabConfig:
    from ebpftop.lab.errors import LabError
    from ebpftop.lab.layout import LabConfig

    kw: dict[str, Any] = {"name": args.instance}
    if args.lab_command == "up":
        try:
            stable, canary = (int(x) for x in args.weights.split("/"))
        except ValueError:
            raise LabError("config", f"--weights {args.weights!r}: use STABLE/CANARY, e.g. 90/10") from None
        kw.update(
            rate=args.rate,
            weights=(stable, canary),
            prometheus_port=args.prometheus_port,
            subnet=args.subnet,
            nodes=args.nodes,
        )
    cfg = LabConfig(**kw)
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    from ebpftop.lab import manager
    from ebpftop.lab.errors import LabError
    from ebpftop.lab.state import StateFileError

    try:
        cfg = _config(args)
        if args.lab_command == "up":
            manager.up(cfg, _say)
            ep = manager.endpoints(cfg)
            if ep:
                # `ebpftop --lab` opens the default instance; another one is named.
                named = "" if cfg.name == "lab" else f" --instance {cfg.name}"
                watch = "ebpftop --lab" if not named else f"ebpftop --lab-instance {cfg.name}"
                _say(
                    f"lab is up: Prometheus {ep.prometheus_url}; watch with `{watch}`; "
                    f"stop with `ebpftop lab down{named}`"
                )
            return 0
        if args.lab_command == "down":
            if not manager.down(cfg, _say):
                _say("lab is not up; nothing to remove")
            return 0
        if args.lab_command == "status":
            return _status(manager.status(cfg), args.json, _instance_flag(cfg))
        from ebpftop.lab import faults, nodefaults

        if nodefaults.is_node_target(args.variant):
            for line in manager.node_fault(cfg, args.variant, args.terms):
                _say(line)
            return 0
        if faults.is_fault(args.variant, args.terms):
            _say(manager.fault(cfg, args.variant, args.terms))
            return 0
        knobs = manager.inject(cfg, args.variant, args.terms)
        _say(f"{args.variant}: {knobs.describe()}")
        return 0
    except LabError as exc:
        _err(exc.reason if exc.part == "lab" else str(exc))
        return 2 if exc.part in ("config", "inject") else 1
    except StateFileError as exc:
        _err(f"{exc}; `ebpftop lab down` removes it and whatever carries the lab's names")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _instance_flag(cfg: LabConfig) -> str:
    """` --instance NAME` for a lab that is not the default one (commands a hint prints)."""
    from ebpftop.lab.layout import LabConfig

    return "" if cfg.name == LabConfig().name else f" --instance {cfg.name}"


def _status(st: LabStatus, as_json: bool, instance: str = "") -> int:
    code = 0 if st.healthy else (1 if st.up else EXIT_NOT_UP)
    if as_json:
        print(
            json.dumps(
                {"up": st.up, "healthy": st.healthy, "parts": [dataclasses.asdict(p) for p in st.parts]},
                indent=2,
            )
        )
        return code
    if not st.up:
        _say(f"lab is not up (start it with `ebpftop lab up{instance}`)")
        return code
    width = max(len(p.part) for p in st.parts)
    for p in st.parts:
        _say(f"{p.part:<{width}}  {'ok  ' if p.ok else 'FAIL' if p.traffic else 'DOWN'}  {p.detail}")
    down = [p.part for p in st.parts if not p.ok and not p.traffic]
    if st.healthy:
        _say("lab is healthy")
    elif down:
        _say("lab has parts down: " + ", ".join(down))
    elif nodes_off := [p.part for p in st.parts if not p.ok and p.part.startswith("node")]:
        _say("lab runs; made to fail on purpose: " + ", ".join(nodes_off) + " (see above)")
    else:
        _say("lab runs but the load generator's requests fail (see loadgen above)")
    return code
