"""The lab on its real parts, from a slow request to its code (collectors, then the
dashboard's `x` and Enter), and `lab status` when the load generator's requests fail.

Its own lab instance ("tr", subnet and Prometheus port), so a developer's lab keeps
running. The services are the real Go service (lab/goservice); the trace ids come from
the exemplars Prometheus scraped, read by the canary collector; the samples from the
services' net/http/pprof, read by the profiles collector as `ebpftop --lab` wires it.
Every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from labs import running_lab

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
    with running_lab(CFG) as layout:
        yield layout


def lab_settings(**changes: str) -> Settings:
    ep = manager.endpoints(CFG)
    assert ep is not None
    # pprof only (no BPF sampler to compile): the samples that carry trace ids.
    base = Settings(profile_hz=0, pprof_seconds=5, canary_window="30s", canary_timeout=10.0, **changes)
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


async def test_x_then_enter_on_a_slow_trace_shows_its_samples_in_profiles(lab, tmp_path):
    """The issue's path on the dashboard: Canary pane, `x`, Enter on the slowest trace id;
    Profiles shows the samples of that very request (a request newer than the last
    profile finds them when the next one arrives, within pprof_seconds)."""
    from textual.widgets import OptionList, Static

    from ebpftop.core.runtime import Runtime
    from ebpftop.tui.app import EbpftopApp
    from ebpftop.tui.panes.profiles.pane import ProfilesPane

    s = lab_settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))
    app = EbpftopApp(Runtime(s, collectors=[CanaryCollector(s), from_settings(s)]))
    assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "cpu=on"]) == 0
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            profiling = time.time()
            olist = app.query_one("#canary-exemplars", OptionList)

            def profiled() -> int | None:
                """The row of a slow request made while the dashboard profiles (older ones
                find nothing, and say so: tested above)."""
                snap = app.runtime.store.latest("canary")
                services = snap.data.services if snap is not None and snap.data is not None else ()
                times = [e.time for svc in services for e in svc.exemplars]
                row = next((i for i, t in enumerate(times) if t > profiling + 1), None)
                return row if row is not None and olist.option_count == len(times) else None

            pane = app.query_one(ProfilesPane)
            for _ in range(5):  # the list may be rebuilt between reading it and the keys
                await wait_for(pilot, lambda: profiled() is not None, "a slow trace id listed")
                row = profiled()
                assert row is not None
                await pilot.press("3", "x", "home", *["down"] * row, "enter")
                await wait_for(pilot, lambda: app.focused is pane, "Profiles follows the trace")
                if pane.trace is not None and (pane.trace.at or 0) > profiling + 1:
                    break
            assert pane.trace is not None and (pane.trace.at or 0) > profiling + 1
            trace = pane.trace.trace_id
            title = app.query_one("#profiles-title", Static)
            await wait_for(
                pilot,
                lambda: pane.view is not None and pane.view.matched,
                f"samples of trace {trace}",
                detail=lambda: str(title.render()),
            )
            text = str(title.render())
            canary_url = Layout(CFG).pprof_url("canary")
            assert (
                text.startswith(f"trace_id={trace}: ")
                and f"(pprof of checkout canary at {canary_url}, " in text
            )
            assert pane.view is not None
            assert {tag(g.tags, "trace_id") for g in pane.view.groups} == {trace}
            assert any("main.cpuHeavyPath" in st.frames for st in pane.view.stacks)
    finally:
        assert cli_main(["lab", "inject", "--instance", CFG.name, "canary", "reset"]) == 0


async def wait_for(pilot, ok, what: str, detail=lambda: "", seconds: float = 60.0) -> None:
    """Let the app run until `ok()` holds (a bound on waiting, not a speed check)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ok():
            return
        await pilot.pause(0.1)
    assert ok(), f"{what}: not within {seconds:g}s; {detail()}"
