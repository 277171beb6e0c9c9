"""The lab on its real parts, from a slow request to its code, and `lab status` when the
load generator's requests fail.

Its own lab instance ("tr", subnet and Prometheus port), so a developer's lab keeps
running. The services are the real Go service (lab/goservice); the trace ids come from
the exemplars Prometheus scraped, read by the canary collector; the samples from the
services' net/http/pprof, read by the profiles collector as `ebpftop --lab` wires it.
Every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from conftest import need, need_root

from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.profiles.aggregate import select_for_trace
from ebpftop.collectors.profiles.collector import from_settings
from ebpftop.collectors.profiles.model import tag
from ebpftop.core.settings import Settings
from ebpftop.lab import manager, procs
from ebpftop.lab.haproxy import RuntimeAPI
from ebpftop.lab.layout import LabConfig, Layout

pytestmark = pytest.mark.integration

CFG = LabConfig(name="tr", subnet="198.18.212.0/24", prometheus_port=19212, rate=20, weights=(50, 50))
DEADLINE = 120.0


@pytest.fixture(scope="module")
def lab():
    need_root()
    for binary in ("haproxy", "prometheus", "ip", "go"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    try:
        manager.up(CFG)
        yield Layout(CFG)
    finally:
        manager.down(CFG)


def lab_settings() -> Settings:
    ep = manager.endpoints(CFG)
    assert ep is not None
    # pprof only (no BPF sampler to compile): the samples that carry trace ids.
    base = Settings(profile_hz=0, pprof_seconds=5, canary_window="30s", canary_timeout=10.0)
    return manager.wire_settings(base, ep)


async def test_a_slow_exemplars_trace_id_leads_to_that_requests_pprof_samples(lab):
    settings = lab_settings()
    canary_url = Layout(CFG).pprof_url("canary")
    assert canary_url in settings.pprof_urls and settings.pprof_every == settings.pprof_seconds
    # the canary regresses on CPU: its slow requests spend ~50 ms each in main.cpuHeavyPath
    assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "cpu=on"]) == 0
    canary, profiles = CanaryCollector(settings), from_settings(settings)
    await canary.start()
    await profiles.start()
    seen: list[str] = []
    try:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            service = (await canary.collect()).services[0]
            data = await profiles.collect()
            kept = list(data.windows) + list(data.captures)
            for ex in service.exemplars:  # the slow ones, slowest first
                sel = select_for_trace(kept, ex.trace_id, service.name, ex.time)
                seen.append(sel.how)
                if sel.matched_trace:
                    break
            else:
                await asyncio.sleep(1.0)
                continue
            break
        else:
            pytest.fail(f"no slow exemplar found its samples within {DEADLINE:g}s; last: {seen[-3:]}")
    finally:
        await profiles.close()
        await canary.close()
        assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "reset"]) == 0
    assert service.name == "checkout" and ex.value_s >= 0.05  # a slow request: cpu=on burns 50 ms
    assert sel.how.startswith(f"trace_id={ex.trace_id}: ")
    assert f"(pprof of checkout canary at {canary_url}, " in sel.how
    assert sel.stacks and all(tag(s.tags, "trace_id") == ex.trace_id for s in sel.stacks)
    assert {(tag(s.tags, "service"), tag(s.tags, "track")) for s in sel.stacks} == {("checkout", "canary")}
    assert len({tag(s.tags, "span_id") for s in sel.stacks}) == 1  # one request: one span
    assert any("main.cpuHeavyPath" in s.frames for s in sel.stacks)
    # A trace id no request had finds nothing, and the pane's fallback says what it shows.
    miss = select_for_trace(kept, "0" * 32, service.name, time.time() - 5)
    assert not miss.matched_trace
    assert miss.how.startswith(f"no sample carries trace_id={'0' * 32} (pprof of checkout ")
    assert f"pprof of checkout canary at {canary_url}, " in miss.how
    assert "; showing service=checkout (" in miss.how


def loadgen(status: manager.LabStatus) -> manager.PartStatus:
    return next(p for p in status.parts if p.part == "loadgen")


def poll_status(ok, what: str) -> manager.LabStatus:
    end = time.monotonic() + DEADLINE
    status = manager.status(CFG)
    while time.monotonic() < end:
        status = manager.status(CFG)
        if ok(status):
            return status
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {DEADLINE:g}s; last: {[(p.part, p.ok, p.detail) for p in status.parts]}")


def test_lab_status_says_when_the_load_generators_requests_fail(lab, capsys):
    poll_status(lambda s: s.healthy, "lab healthy")
    api = RuntimeAPI(lab.haproxy_socket)
    haproxy_pid = manager.status(CFG).state.proc("haproxy").pid  # type: ignore[union-attr]
    try:
        # Every process runs, every server is "running": HAProxy has nowhere to send a request.
        for server in ("stable", "canary"):
            api.set_weight("be_app", server, 0)
        status = poll_status(lambda s: not loadgen(s).ok, "loadgen failing")
        part = loadgen(status)
        assert part.traffic and "requests fail:" in part.detail
        assert "answered by HAProxy with 502/503/504" in part.detail
        assert "HTTP 503 x" in part.detail
        assert not status.healthy and status.running
        assert all(p.ok for p in status.parts if p.part != "loadgen")  # the parts alone look healthy
        capsys.readouterr()
        assert cli_main(["lab", "status", "--instance", CFG.name]) == 1
        out = capsys.readouterr().out
        assert "FAIL" in out and "lab runs but the load generator's requests fail" in out
        # `lab up` keeps a lab whose parts run (rebuilding would not bring the requests back)
        said: list[str] = []
        manager.up(CFG, said.append)
        assert any(line.startswith("but loadgen: ") for line in said), said
        st = manager.status(CFG).state
        assert st is not None and st.proc("haproxy").pid == haproxy_pid  # type: ignore[union-attr]
        assert procs.alive(st.proc("haproxy"))  # type: ignore[arg-type]
    finally:
        for server, weight in zip(("stable", "canary"), CFG.weights, strict=True):
            api.set_weight("be_app", server, weight)
    poll_status(lambda s: s.healthy, "lab healthy again once the weights are back")
