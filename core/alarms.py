"""Alarms: what is wrong right now, as data, for the header, the kiosk and `snapshot --json`.

Health alarms (down, degraded) are defined here; data alarms are pure functions beside
each payload model in collectors/, registered with `register_alarms` as payload types
are with `register_payload`, so core imports no collector. Both readers compute them
from the store's snapshots, so they say the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .model import Health, HealthState, Snapshot
from .store import last_good

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]


@dataclass(frozen=True, eq=True)
class Alarm:
    """One thing that is wrong. `text` is the line the header shows (its untrusted parts
    not yet cleaned: every sink cleans); `kind` and `detail` are for scripts."""

    source: str
    severity: Severity
    text: str
    kind: str  # "down", "degraded", "canary_verdict", "counter_growing", "rules_disagree", ...
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)


# A source's data alarms: its latest snapshot (which carries data) and its history,
# oldest first, ending with that snapshot.
AlarmRule = Callable[[Snapshot, Sequence[Snapshot]], Iterable[Alarm]]

_RULES: dict[str, AlarmRule] = {}


def register_alarms(source: str, rule: AlarmRule) -> AlarmRule:
    """Declare the data alarms of a source (one rule per source, the last one wins)."""
    _RULES[source] = rule
    return rule


def health_alarm(
    source: str, health: Health, now: float | None = None, *, stale: bool = False
) -> Alarm | None:
    """Down is an error, degraded a warning; ok and off (not configured) raise nothing.
    `stale`: the data on show is older than the latest sample (it failed after delivering)."""
    if health.state not in (HealthState.DOWN, HealthState.DEGRADED):
        return None
    age = health.age(now) if now is not None else None
    text = f"{source} {health.state.value}" + (f": {health.message}" if health.message else "")
    detail = {
        "state": health.state.value,
        "message": health.message,
        "hint": health.hint,
        "errors": health.errors,
        "last_good_age_s": None if age is None else round(age, 3),
        "stale": stale,
    }
    severity: Severity = "error" if health.state is HealthState.DOWN else "warning"
    return Alarm(source, severity, text, health.state.value, detail)


def data_alarms(latest: Snapshot, history: Sequence[Snapshot]) -> tuple[Alarm, ...]:
    """The source's own alarms. Only current data raises them: stale data has its health
    alarm instead. A rule that fails raises nothing (and is logged), as a pane would."""
    rule = _RULES.get(latest.source)
    if rule is None or latest.data is None:
        return ()
    try:
        return tuple(rule(latest, history))
    except Exception:
        log.warning("alarms of %s failed", latest.source, exc_info=True)
        return ()


def source_alarms(latest: Snapshot | None, history: Sequence[Snapshot], now: float) -> tuple[Alarm, ...]:
    """Everything wrong with one source: its data alarms, then its health alarm."""
    if latest is None:
        return ()
    good = last_good(latest, history)
    health = health_alarm(latest.source, latest.health, now, stale=good is not None and good is not latest)
    return data_alarms(latest, history) + ((health,) if health is not None else ())


def ordered(found: Iterable[Alarm | None]) -> tuple[Alarm, ...]:
    """The order every reader shows: data alarms first (errors first, otherwise as
    found), then health alarms (down before degraded, then by source name)."""
    data = [a for a in found if a is not None]
    health = [a for a in data if a.kind in HEALTH_KINDS]
    data = [a for a in data if a.kind not in HEALTH_KINDS]
    return tuple(sorted(data, key=lambda a: a.severity != "error")) + tuple(
        sorted(health, key=lambda a: (a.severity != "error", a.source))
    )


def alarms(
    latest: Callable[[str], Snapshot | None],
    history: Callable[[str], Sequence[Snapshot]],
    sources: Iterable[str],
    now: float,
) -> tuple[Alarm, ...]:
    """Every alarm of `sources` (in `ordered` order; data alarms of equal severity in the
    order of `sources`). `latest`/`history` are a store's (`Store.latest`, `Store.history`)."""
    return ordered(
        alarm for source in sources for alarm in source_alarms(latest(source), history(source), now)
    )


HEALTH_KINDS = frozenset({HealthState.DOWN.value, HealthState.DEGRADED.value})
