"""Fault knobs of the lab service: added latency, error ratio, CPU-heavy path.

`ebpftop lab inject canary latency=300ms errors=2% cpu=on` is parsed here, whole, before
anything is sent: one bad term and nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import LabError

KNOBS_PATH = "/-/knobs"  # on each service (goservice/main.go checks the same rules)
MAX_LATENCY_S = 10.0
ALLOWED = {
    "latency": "a duration from 0 to 10s, like 300ms or 1.5s",
    "errors": "a percentage from 0% to 100%, like 2% or 0.5%",
    "cpu": "on or off",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Knobs:
    latency_s: float = 0.0
    error_ratio: float = 0.0
    cpu: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Knobs:
        """Validates a dict received over HTTP (the service trusts nothing)."""
        if not isinstance(data, dict):
            raise ValueError("knobs must be a JSON object")
        unknown = set(data) - {"latency_s", "error_ratio", "cpu"}
        if unknown:
            raise ValueError(f"unknown knob fields: {sorted(unknown)}")
        lat = data.get("latency_s", 0.0)
        err = data.get("error_ratio", 0.0)
        cpu = data.get("cpu", False)
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not 0 <= lat <= MAX_LATENCY_S:
            raise ValueError(f"latency_s must be 0-{MAX_LATENCY_S:g}")
        if isinstance(err, bool) or not isinstance(err, (int, float)) or not 0 <= err <= 1:
            raise ValueError("error_ratio must be 0-1")
        if not isinstance(cpu, bool):
            raise ValueError("cpu must be true or false")
        return cls(float(lat), float(err), cpu)

    def describe(self) -> str:
        return (
            f"latency={self.latency_s * 1000:g}ms errors={self.error_ratio * 100:g}% "
            f"cpu={'on' if self.cpu else 'off'}"
        )


def parse_terms(terms: list[str], current: Knobs | None = None) -> Knobs:
    """`["latency=300ms", "errors=2%", "cpu=on"]` or `["reset"]` -> Knobs.

    Knobs not named keep their `current` value. Raises LabError naming the knob and
    its allowed values.
    """
    if not terms:
        raise LabError(
            "inject", "nothing to inject: give knob=value terms (" + _allowed_line() + ") or reset"
        )
    if terms == ["reset"]:
        return Knobs()
    values = asdict(current or Knobs())
    seen: set[str] = set()
    for term in terms:
        if term == "reset":
            raise LabError("inject", "reset stands alone: `inject <variant> reset`")
        knob, sep, raw = term.partition("=")
        knob = knob.strip().lower()
        if not sep:
            raise LabError("inject", f"{term!r} is not knob=value; knobs: {_allowed_line()}")
        if knob not in ALLOWED:
            raise LabError("inject", f"unknown knob {knob!r}; knobs: {_allowed_line()}")
        if knob in seen:
            raise LabError("inject", f"knob {knob} given twice")
        seen.add(knob)
        raw = raw.strip().lower()
        bad = LabError("inject", f"bad value {raw!r} for knob {knob}: allowed {ALLOWED[knob]}")
        if knob == "latency":
            m = _DURATION.match(raw)
            if not m:
                raise bad
            secs = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
            if secs > MAX_LATENCY_S:
                raise bad
            values["latency_s"] = secs
        elif knob == "errors":
            m = _PERCENT.match(raw)
            if not m or float(m.group(1)) > 100:
                raise bad
            values["error_ratio"] = float(m.group(1)) / 100.0
        else:
            if raw not in ("on", "off"):
                raise bad
            values["cpu"] = raw == "on"
    return Knobs(**values)


def _allowed_line() -> str:
    return "; ".join(f"{k}=<{v}>" for k, v in ALLOWED.items())
