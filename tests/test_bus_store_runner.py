"""Bus fan-out, bounded store, and the runner's health states and backoff."""

from __future__ import annotations

import asyncio

import pytest

from ebpftop.core.bus import Bus
from ebpftop.core.collector import Collector, CollectorRunner, SourceUnavailable
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.core.store import Store


def snap(source="host", seq=1, data=None):
    return Snapshot(source, seq, float(seq), Health(), data)


def test_bus_fans_out_and_survives_a_failing_subscriber():
    bus = Bus()
    got = []

    def bad(_s):
        raise RuntimeError("boom")

    bus.subscribe(bad)
    unsubscribe = bus.subscribe(got.append)
    bus.publish(snap())
    assert len(got) == 1 and bus.subscriber_errors == 1
    unsubscribe()
    bus.publish(snap(seq=2))
    assert len(got) == 1


def test_store_keeps_latest_and_bounded_history():
    store = Store(history=3)
    for i in range(10):
        store.put(snap(seq=i))
    store.put(snap("flows", 1))
    assert store.latest("host").seq == 9
    assert [s.seq for s in store.history("host")] == [7, 8, 9]
    assert len(store) == 4
    assert store.health("canary").state is HealthState.DOWN
    with pytest.raises(ValueError):
        Store(history=0)


class Scripted(Collector):
    """Returns or raises the scripted outcomes in order."""

    name = "scripted"
    interval = 0.01

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    async def collect(self):
        out = self.outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out


async def test_runner_health_goes_down_ok_degraded_and_recovers():
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    runner = CollectorRunner(
        Scripted([RuntimeError("no route"), {"v": 1}, OSError("timeout"), {"v": 2}]), bus
    )
    for _ in range(4):
        await runner.run_once()
    states = [s.health.state for s in seen]
    assert states == [HealthState.DOWN, HealthState.OK, HealthState.DEGRADED, HealthState.OK]
    assert seen[0].health.message == "RuntimeError: no route" and seen[0].data is None
    assert seen[2].health.last_ok == seen[1].time  # age of last good data is kept
    assert seen[2].health.errors == 1
    assert [s.seq for s in seen] == [1, 2, 3, 4]


async def test_runner_reports_unavailable_and_off_with_hint():
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    await CollectorRunner(
        Scripted([SourceUnavailable("BPF unavailable: needs root", "run with sudo")]), bus
    ).run_once()
    await CollectorRunner(
        Scripted([SourceUnavailable("not configured", "set prometheus_url", off=True)]), bus
    ).run_once()
    assert (seen[0].health.state, seen[0].health.hint) == (HealthState.DOWN, "run with sudo")
    assert seen[1].health.state is HealthState.OFF


async def test_runner_backs_off_exponentially_and_is_capped():
    bus = Bus()
    runner = CollectorRunner(Scripted([RuntimeError()] * 10), bus)
    waits = [runner._fail(RuntimeError("x")) for _ in range(10)]
    assert waits == sorted(waits) and waits[0] < waits[-1] <= 30.0


async def test_run_closes_collector_when_cancelled():
    closed = asyncio.Event()

    class Forever(Collector):
        name = "forever"
        interval = 0.01

        async def collect(self):
            return 1

        async def close(self):
            closed.set()

    task = asyncio.create_task(CollectorRunner(Forever(), Bus()).run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_urgent_sources_start_before_the_others(tmp_path):
    """The canary's verdict from history names an incident already under way: its
    requests leave before the other sources' imports and BPF compiles begin."""
    started: list[str] = []

    class Source(Collector):
        def __init__(self, name: str, urgent: bool = False) -> None:
            self.name, self.urgent = name, urgent

        async def start(self) -> None:
            started.append(self.name)

        async def collect(self) -> int:
            return 1

    settings = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
    sources = [Source("host"), Source("flows"), Source("canary", urgent=True), Source("rules")]
    runtime = Runtime(settings, list(sources))
    await runtime.start()
    try:
        while len(started) < 4:
            await asyncio.sleep(0.01)
    finally:
        await runtime.stop()
    assert started == ["canary", "host", "flows", "rules"]
