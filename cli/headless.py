"""The headless snapshot (`ebpftop snapshot --json`): run the collectors without a UI and
print what the panes and the header would show as one JSON document, `alarms` included
(docs/ARCHITECTURE.md, "Headless snapshot").

It runs `duration` seconds, then up to `GRACE` more only while a requested source has
said nothing yet (BPF sources compile first). Sources that are off count as failures
only when asked for by name.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ebpftop.collectors.registry import default_collectors
from ebpftop.collectors.selfcost.collector import find as find_selfcost
from ebpftop.collectors.selfcost.summary import own_cost
from ebpftop.core.alarms import Alarm, alarms
from ebpftop.core.codec import to_jsonable
from ebpftop.core.collector import Collector
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.record import SOURCE as RECORDER
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings

VERSION = 1
DEFAULT_DURATION = 2.0
GRACE = 20.0
_POLL = 0.05


class UnknownSource(ValueError):
    def __init__(self, unknown: list[str], valid: list[str]) -> None:
        super().__init__(f"unknown source {', '.join(unknown)}; valid sources: {', '.join(valid)}")
        self.unknown = unknown
        self.valid = valid


@dataclass
class Failure:
    source: str
    message: str


@dataclass
class HeadlessResult:
    doc: dict[str, Any]
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def choose(collectors: list[Collector], requested: list[str] | None) -> list[Collector]:
    """The collectors asked for (all when `requested` is empty); UnknownSource otherwise."""
    if not requested:
        return collectors
    names = [c.name for c in collectors]
    unknown = [r for r in dict.fromkeys(requested) if r not in names]
    if unknown:
        raise UnknownSource(unknown, names)
    wanted = set(requested)
    return [c for c in collectors if c.name in wanted]


def delivered(snap: Snapshot | None) -> bool:
    return snap is not None and snap.health.state == HealthState.OK and snap.data is not None


def failure_message(snap: Snapshot | None) -> str:
    if snap is None:
        return "no report within the time allowed"
    h = snap.health
    if h.state == HealthState.OK:
        return "reported no data"
    msg = h.message or h.state.value
    if h.state == HealthState.OFF:
        msg = f"off: {msg}"
    return f"{msg} ({h.hint})" if h.hint else msg


NO_REPORT = Health(HealthState.DOWN, "no report within the time allowed")


def source_entry(snap: Snapshot | None, now: float) -> dict[str, Any]:
    if snap is None:
        return {"health": to_jsonable(NO_REPORT), "data": None, "age_s": None, "seq": 0, "time": None}
    age = snap.health.age(now)
    return {
        "health": to_jsonable(snap.health),
        "data": to_jsonable(snap.data),
        "age_s": None if age is None else round(age, 3),
        "seq": snap.seq,
        "time": snap.time,
    }


def build_document(runtime: Runtime, names: list[str], *, started: float, now: float) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": VERSION,
        "time": now,
        "host": socket.gethostname(),
        "duration_s": round(now - started, 3),
        "sources": {name: source_entry(runtime.store.latest(name), now) for name in names},
    }
    rec = runtime.store.latest(RECORDER)
    if rec is not None:
        doc["recorder"] = {"health": to_jsonable(rec.health), "data": to_jsonable(rec.data)}
    doc["alarms"] = to_jsonable(document_alarms(runtime, names, now))
    if "selfcost" in names:
        # ebpftop's own cost in one place: the selfcost sample and the other sources' losses
        store = runtime.store
        doc["own_cost"] = to_jsonable(
            own_cost(store.latest("selfcost"), store.latest("flows"), store.latest("profiles"))
        )
    return doc


def document_alarms(runtime: Runtime, names: list[str], now: float) -> tuple[Alarm, ...]:
    """The header's alarms over the sources reported; one that never reported is down."""
    store = runtime.store

    def latest(name: str) -> Snapshot | None:
        snap = store.latest(name)
        if snap is None and name in names:
            return Snapshot(name, 0, now, NO_REPORT)
        return snap

    return alarms(latest, store.history, [*names, RECORDER], now)


def judge(runtime: Runtime, names: list[str], explicit: bool) -> list[Failure]:
    failures = []
    for name in names:
        snap = runtime.store.latest(name)
        if delivered(snap):
            continue
        if snap is not None and snap.health.state == HealthState.OFF and not explicit:
            continue
        failures.append(Failure(name, failure_message(snap)))
    return failures


async def run_snapshot(
    settings: Settings,
    sources: list[str] | None = None,
    *,
    duration: float = DEFAULT_DURATION,
    grace: float = GRACE,
    collectors: list[Collector] | None = None,
    bpf_stats: bool = False,
) -> HeadlessResult:
    """Run the collectors (all, or those named) and report. Raises UnknownSource.

    `bpf_stats`: the kernel's BPF run-time stats on for the run (the selfcost source
    holds the switch and lets go when the runtime stops), so the document carries the
    run time per packet of ebpftop's programs. Off by default: a snapshot run by a
    script every minute should not flip a global kernel switch unasked."""
    chosen = choose(default_collectors(settings) if collectors is None else collectors, sources)
    names = [c.name for c in chosen]
    runtime = Runtime(settings, chosen)
    started = time.time()
    loop = asyncio.get_running_loop()
    selfcost = find_selfcost(runtime)
    if bpf_stats and selfcost is not None:
        selfcost.stats_on()  # a failure (not root) is in the document: own_cost.process.stats.error
    await runtime.start()
    try:
        await asyncio.sleep(duration)
        deadline = loop.time() + grace
        while loop.time() < deadline and any(runtime.store.latest(n) is None for n in names):
            await asyncio.sleep(_POLL)
    finally:
        await runtime.stop()
    now = time.time()
    doc = build_document(runtime, names, started=started, now=now)
    return HeadlessResult(doc, judge(runtime, names, explicit=bool(sources)))
