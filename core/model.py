"""The data every collector emits: immutable snapshots with a health state.

A snapshot is data only. It serialises to JSON (`to_json`/`from_json`) so the
recorder, replay and the headless mode all carry exactly what the panes show.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .codec import DecodeError, from_jsonable, to_jsonable

SOURCES = ("host", "flows", "rules", "canary", "profiles")


class HealthState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # data arrives but something is wrong (stale, partial, retrying)
    DOWN = "down"  # no usable data: the source failed or is unavailable here
    OFF = "off"  # not configured; not a failure

    @property
    def rank(self) -> int:
        """Sort key: worst first when listing what is wrong."""
        return {"down": 0, "degraded": 1, "ok": 2, "off": 3}[self.value]


@dataclass(frozen=True)
class Health:
    state: HealthState = HealthState.OK
    message: str = ""  # why: the last error or what is missing, one line
    hint: str = ""  # what to do about it, e.g. "run as root"
    last_ok: float | None = None  # wall time of the last good data
    errors: int = 0  # consecutive failures

    def age(self, now: float | None = None) -> float | None:
        if self.last_ok is None:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.last_ok)


# What a source has before its first snapshot (the store's answer, the panes' line).
NO_DATA_YET = Health(HealthState.DOWN, "no data yet")


@dataclass(frozen=True)
class Snapshot:
    source: str
    seq: int
    time: float  # wall clock when collected
    health: Health
    data: Any = None  # the source's payload dataclass, or None when there is none

    def with_health(self, health: Health) -> Snapshot:
        return replace(self, health=health)


# --- payloads -------------------------------------------------------------------------

_PAYLOADS: dict[str, type] = {}


def register_payload(source: str, cls: type) -> type:
    """Declare the payload dataclass a source emits, so snapshots decode typed."""
    _PAYLOADS[source] = cls
    return cls


def payload_type(source: str) -> type | None:
    return _PAYLOADS.get(source)


@dataclass(frozen=True)
class NicRate:
    name: str
    rx_bps: float
    tx_bps: float
    up: bool = True


@dataclass(frozen=True)
class HostData:
    hostname: str
    kernel: str
    uptime_s: float
    cpu_percent: float
    cpu_count: int
    load: tuple[float, float, float]
    mem_total: int
    mem_used: int
    mem_percent: float
    net_rx_bps: float | None  # None on the first sample: a rate needs two
    net_tx_bps: float | None
    nics: tuple[NicRate, ...] = field(default_factory=tuple)


register_payload("host", HostData)


@dataclass(frozen=True)
class Marker:
    """An incident marker dropped by the operator (the built-in harmless action)."""

    text: str
    author: str


register_payload("marker", Marker)


# --- JSON -----------------------------------------------------------------------------


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    out: dict[str, Any] = to_jsonable(snap)
    return out


def snapshot_from_dict(obj: Any) -> Snapshot:
    if not isinstance(obj, dict):
        raise DecodeError("", "a snapshot must be an object")
    source = obj.get("source")
    if not isinstance(source, str):
        raise DecodeError(".source", "missing or not a string")
    base: Snapshot = from_jsonable(Snapshot, {**obj, "data": None})
    raw = obj.get("data")
    cls = _PAYLOADS.get(source)
    data = raw if cls is None or raw is None else from_jsonable(cls, raw, ".data")
    return replace(base, data=data)


def to_json(snap: Snapshot) -> str:
    return json.dumps(snapshot_to_dict(snap), separators=(",", ":"), allow_nan=False)


def from_json(text: str) -> Snapshot:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    return snapshot_from_dict(obj)
