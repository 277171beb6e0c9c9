"""Bus fan-out, bounded store, and the runner's health states and backoff."""

from __future__ import annotations

import asyncio

import pytest

from ebpftop.core import runtime as runtime_module
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


class Source(Collector):
    """Records when its start ran; an urgent one's first sample waits for `go`."""

    def __init__(self, name: str, started: list[str], urgent: bool = False) -> None:
        self.name, self.started, self.urgent = name, started, urgent
        self.go = asyncio.Event()
        if not urgent:
            self.go.set()

    async def start(self) -> None:
        self.started.append(self.name)

    async def collect(self) -> int:
        await self.go.wait()
        return 1


async def until(condition, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


def sources_runtime(tmp_path, started: list[str]) -> tuple[Runtime, Source]:
    canary = Source("canary", started, urgent=True)
    settings = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
    return Runtime(settings, [Source("host", started), Source("flows", started), canary]), canary


async def test_the_others_start_once_the_urgent_source_has_published(tmp_path, monkeypatch):
    """The canary's verdict from history names an incident already under way: the other
    sources' imports, BPF compiles and first frames wait until it is out."""
    monkeypatch.setattr(runtime_module, "HEAD_START", 3600.0)
    started: list[str] = []
    runtime, canary = sources_runtime(tmp_path, started)
    await runtime.start()
    try:
        await until(lambda: started == ["canary"])
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert started == ["canary"]  # its first sample is not out yet
        canary.go.set()
        await until(lambda: len(started) == 3)
        assert started == ["canary", "host", "flows"]
        assert runtime.store.latest("canary") is not None
    finally:
        await runtime.stop()


async def test_an_urgent_source_that_never_answers_holds_the_others_back_only_so_long(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_module, "HEAD_START", 0.2)
    started: list[str] = []
    runtime, _canary = sources_runtime(tmp_path, started)
    await runtime.start()
    try:
        await until(lambda: len(started) == 3)
        assert started == ["canary", "host", "flows"]
        assert runtime.store.latest("canary") is None
    finally:
        await runtime.stop()
