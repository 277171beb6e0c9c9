"""The issue's acceptance test on the lab: inject 300 ms into the canary, the verdict
turns to fail (after warning for the persistence count) and says why; reset, and it
returns to pass. Its own lab instance, subnet and Prometheus port, so a developer's lab
keeps running. Every wait is a poll with a generous deadline."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from conftest import need, need_root

from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.verdict import Verdict
from ebpftop.core.settings import Settings
from ebpftop.lab import manager
from ebpftop.lab.layout import LabConfig, Layout

pytestmark = pytest.mark.integration

CFG = LabConfig(name="cy", subnet="198.18.210.0/24", prometheus_port=19210, rate=40, weights=(50, 50))
DEADLINE = 90.0


@pytest.fixture(scope="module")
def lab():
    need_root()
    for binary in ("haproxy", "prometheus", "ip"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    try:
        manager.up(CFG)
        yield Layout(CFG)
    finally:
        manager.down(CFG)


async def until(c: CanaryCollector, verdict: Verdict, seen: list) -> object:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        s = (await c.collect()).services[0]
        seen.append(s.verdict)
        if s.verdict is verdict:
            return s
        await asyncio.sleep(1.0)
    pytest.fail(
        f"verdict not {verdict.value} within {DEADLINE:g}s; seen {[v.value for v in seen[-10:]]}, "
        f"last: {s.reason} {s.errors}"
    )


async def test_injected_latency_fails_the_canary_and_reset_passes_it(lab):
    c = CanaryCollector(Settings(prometheus_url=lab.prometheus_url, canary_window="15s", canary_timeout=10.0))
    await c.start()
    try:
        await until(c, Verdict.PASS, [])
        assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "latency=300ms"]) == 0
        seen: list[Verdict] = []
        failed = await until(c, Verdict.FAIL, seen)
        assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "reset"]) == 0
        passed = await until(c, Verdict.PASS, [])
    finally:
        await c.close()
        cli_main(["lab", "inject", "--instance", CFG.name, "canary", "reset"])

    assert Verdict.WARN in seen  # the breach warned before it was allowed to fail
    assert failed.variant_label == "track"  # the lab labels variants by track
    m = {x.name: x for x in failed.metrics}
    assert m["p99_ratio"].verdict is Verdict.FAIL
    assert failed.canary.p99_s >= 0.3 and m["p99_ratio"].value > 1.2
    assert "p99 canary/stable" in failed.reason and "for 3/3 evaluations" in failed.reason
    assert failed.exemplars and all(e.value_s >= 0.3 for e in failed.exemplars)
    assert passed.canary.p99_s < 0.3
