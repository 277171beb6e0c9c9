"""Faults of the lab beyond the service's knobs: a service down, a network flood.

`ebpftop lab inject stable down` stops a service's process (HAProxy's health checks then
mark its server down, Prometheus its target); `... stable up` starts it again.
`ebpftop lab inject flood on` starts a UDP flood from the client's namespace to the
stable's (a noisy neighbour on the service's link); `... flood off` stops it. Parsed here,
whole, before anything changes; applied by `manager.fault`.

A service taken down on purpose is written to `faults.json` in the lab's temp dir, so
`lab status` says so (and `lab up` / `ebpftop --lab` keep the lab as it is, instead of
rebuilding what looks crashed); `lab down` removes the temp dir and the flood's process
with the rest of the lab.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass

from .errors import LabError
from .layout import VARIANTS

FLOOD = "flood"
FLOOD_PORT = 9  # discard: nothing listens, the datagrams still cross both links
FLOOD_DEFAULT_BPS = 2_000_000
FLOOD_MAX_BPS = 50_000_000
SERVICE_TERMS = ("down", "up")
FLOOD_HELP = "on, off or rate=<0.01-50MB/s, e.g. 2MB/s or 500KB/s> (rate= starts it)"
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(kb|mb)/s$")
_FILE = "faults.json"


@dataclass(frozen=True)
class Fault:
    target: str
    """a variant (stable, canary) or `flood`."""
    action: str
    """down / up for a variant, on / off for the flood."""
    rate_bps: int = 0
    """The flood's bytes per second (on)."""

    def describe(self) -> str:
        if self.target == FLOOD:
            return f"flood {self.action}" + (
                f" at {self.rate_bps / 1e6:g} MB/s" if self.action == "on" else ""
            )
        return f"{self.target} {self.action}"


def is_fault(target: str, terms: list[str]) -> bool:
    """`inject` terms that name a fault of this module rather than the service's knobs."""
    return target == FLOOD or (target in VARIANTS and len(terms) == 1 and terms[0] in SERVICE_TERMS)


def parse(target: str, terms: list[str]) -> Fault:
    """`("stable", ["down"])`, `("flood", ["rate=5MB/s"])` -> Fault. Raises LabError naming
    the bad term and what is allowed."""
    if target in VARIANTS:
        if len(terms) != 1 or terms[0] not in SERVICE_TERMS:
            raise LabError("inject", f"{target}: `down` or `up` stands alone: `inject {target} down`")
        return Fault(target, terms[0])
    if target != FLOOD:
        raise LabError(
            "inject",
            f"unknown target {target!r}: allowed {', '.join([*VARIANTS, FLOOD])}, node<K> (lab up --nodes)",
        )
    if len(terms) != 1:
        raise LabError("inject", f"flood takes one term: {FLOOD_HELP}")
    term = terms[0].strip().lower()
    if term in ("on", "off"):
        return Fault(FLOOD, term, FLOOD_DEFAULT_BPS if term == "on" else 0)
    knob, _, raw = term.partition("=")
    if knob != "rate" or _RATE.match(raw) is None:
        raise LabError("inject", f"bad flood term {terms[0]!r}: allowed {FLOOD_HELP}")
    rate = rate_bps(raw)
    if rate is None:
        raise LabError("inject", f"bad flood rate {raw!r}: allowed {FLOOD_HELP}")
    return Fault(FLOOD, "on", rate)


def rate_bps(raw: str) -> int | None:
    """`2mb/s`, `500kb/s` (lower case) -> bytes per second; None unless 0.01-50 MB/s."""
    m = _RATE.match(raw)
    if m is None:
        return None
    rate = float(m.group(1)) * (1000 if m.group(2) == "kb" else 1_000_000)
    return int(rate) if 10_000 <= rate <= FLOOD_MAX_BPS else None


def flood_argv(to: str, bps: int) -> list[str]:
    """lab/flood.py at `bps` to `to`'s discard port, run by this interpreter."""
    return [
        sys.executable,
        "-m",
        "ebpftop.lab.flood",
        "--to",
        to,
        "--port",
        str(FLOOD_PORT),
        "--rate",
        str(bps),
    ]


def down_services(tmpdir: str | None) -> set[str]:
    """The services `inject <variant> down` took down (and not up again)."""
    if not tmpdir:
        return set()
    try:
        with open(os.path.join(tmpdir, _FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return set()
    down = data.get("down") if isinstance(data, dict) else None
    return {v for v in down if v in VARIANTS} if isinstance(down, list) else set()


def mark_down(tmpdir: str, variant: str, down: bool) -> None:
    now = down_services(tmpdir)
    now = now | {variant} if down else now - {variant}
    path = os.path.join(tmpdir, _FILE)
    with open(path + ".tmp", "w") as f:
        json.dump({"down": sorted(now)}, f)
    os.replace(path + ".tmp", path)
