"""The lab on its real parts: namespaces, the service, HAProxy, Prometheus, the load generator.

One lab instance ("t", its own subnet and Prometheus port, so a developer's own lab
keeps running) serves the module; fault tests use another instance ("tf"). Every wait is
a poll with a generous deadline; the assertions are on what the parts report.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
from conftest import need, need_root

from ebpftop.cli.main import main as cli_main
from ebpftop.lab import manager, procs, topology
from ebpftop.lab import state as statefile
from ebpftop.lab.errors import LabError
from ebpftop.lab.haproxy import RuntimeAPI
from ebpftop.lab.layout import LabConfig, Layout
from ebpftop.lab.prometheus import PrometheusAPI

pytestmark = pytest.mark.integration

CFG = LabConfig(name="t", subnet="198.18.200.0/24", prometheus_port=19191, rate=40, weights=(50, 50))
FAULT = LabConfig(name="tf", subnet="198.18.201.0/24", prometheus_port=19192, rate=5)
DEADLINE = 40.0


def _needs() -> None:
    need_root()
    for binary in ("haproxy", "prometheus", "ip"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")


def poll(fn, what: str, deadline: float = DEADLINE):
    """fn() until it returns something truthy; the last value (or error) goes in the failure."""
    end = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {deadline:g}s (last: {last!r})")


def leftovers(cfg: LabConfig, st: statefile.LabState | None) -> list[str]:
    """Everything of a lab instance that still exists."""
    lay = Layout(cfg)
    found = [f"netns {n}" for n in topology.existing_namespaces(lay)]
    found += [f"link {n}" for n in topology.existing_links(lay)]
    found += [f"tmp {d}" for d in os.listdir(tempfile.gettempdir()) if d.startswith(lay.tmp_prefix)]
    if os.path.exists(lay.state_file):
        found.append(f"state {lay.state_file}")
    if st is not None:
        found += [f"process {p.part} {p.pid}" for p in st.processes if procs.alive(p)]
        if st.tmpdir:
            found += [f"process {p.pid} using tmpdir" for p in procs.find_by_argv_fragment(st.tmpdir)]
    return found


@pytest.fixture(scope="module")
def lab():
    _needs()
    messages: list[str] = []
    try:
        st = manager.up(CFG, messages.append)
        yield st
    finally:
        manager.down(CFG)


def prom() -> PrometheusAPI:
    return PrometheusAPI(Layout(CFG).prometheus_url)


def value(promql: str) -> float | None:
    rows = prom().query(promql)
    return rows[0]["value"] if rows else None


# ------------------------------------------------------------------ the lab is real


def test_prometheus_sees_both_services_and_haproxy_up(lab):
    def all_up():
        targets = prom().targets()
        up = {(t["job"], t["labels"].get("variant", "")) for t in targets if t["health"] == "up"}
        return up >= {("lab-service", "stable"), ("lab-service", "canary"), ("haproxy", "")} and targets

    targets = poll(all_up, "service and HAProxy targets up")
    assert len(targets) == 3

    def both_variants_served():
        rows = prom().query('sum by (track, version) (http_requests_total{code="200"}) > 0')
        return {(r["metric"]["track"], r["metric"]["version"]) for r in rows} == {
            ("stable", "v1.0.0"),
            ("canary", "v1.1.0"),
        }

    poll(both_variants_served, "requests of both variants in Prometheus")
    poll(lambda: value('haproxy_backend_active_servers{proxy="be_app"}') == 2, "HAProxy exporter series")


def test_latency_exemplars_carry_trace_ids(lab):
    def exemplar_trace_ids():
        now = time.time()
        series = prom().exemplars('http_request_duration_seconds_bucket{track="canary"}', now - 60, now)
        return [e["labels"].get("trace_id", "") for s in series for e in s["exemplars"]]

    ids = poll(exemplar_trace_ids, "canary latency exemplars")
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_haproxy_weights_are_readable_and_settable_through_the_runtime_api(lab):
    api = RuntimeAPI(manager.endpoints(CFG).haproxy_socket)
    assert api.weights() == {"stable": 50, "canary": 50}
    api.set_weight("be_app", "canary", 20)
    try:
        assert api.weights() == {"stable": 50, "canary": 20}
    finally:
        api.set_weight("be_app", "canary", 50)
    assert {s.name: s.op_state for s in api.servers_state()} == {"stable": "running", "canary": "running"}


P90 = 'histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{track="canary"}[4s])))'
ERRORS = (
    'sum(rate(http_requests_total{track="canary",code=~"5.."}[4s]))'
    ' / sum(rate(http_requests_total{track="canary"}[4s]))'
)


def test_inject_moves_canary_latency_and_error_ratio_in_prometheus(lab):
    base_p90 = poll(lambda: value(P90), "baseline canary p90")
    base_err = value(ERRORS)
    assert base_err is not None and base_err < 0.05
    try:
        knobs = manager.inject(CFG, "canary", ["latency=300ms", "errors=50%"])
        assert (knobs.latency_s, knobs.error_ratio) == (0.3, 0.5)
        p90 = poll(lambda: (v := value(P90)) is not None and v >= 0.25 and v, "canary p90 rising to 300ms+")
        err = poll(lambda: (v := value(ERRORS)) is not None and v > 0.2 and v, "canary error ratio rising")
        assert p90 > base_p90 and err > base_err
        stable_p90 = value(P90.replace('"canary"', '"stable"'))
        assert stable_p90 is not None and stable_p90 < 0.25  # only the canary changed
    finally:
        manager.inject(CFG, "canary", ["reset"])
    poll(lambda: (v := value(P90)) is not None and v < 0.25, "canary p90 back down after reset")


def test_lab_settings_wire_the_dashboard_to_the_running_lab(lab):
    from ebpftop.core.settings import Settings

    settings = manager.lab_settings(Settings(), CFG)
    assert settings.prometheus_url == Layout(CFG).prometheus_url
    assert PrometheusAPI(settings.prometheus_url).ready()
    assert set(settings.ifaces) <= set(topology.existing_links(Layout(CFG)))
    assert set(settings.ifaces) == {"ebt-t-client", "ebt-t-lb", "ebt-t-stable", "ebt-t-canary"}
    ep = manager.endpoints(CFG)
    assert RuntimeAPI(ep.haproxy_socket).weights().keys() == ep.haproxy_servers.keys()
    assert all(
        psutil.Process(pid).environ().get("OTEL_SERVICE_NAME") == "checkout"
        for pid in ep.service_pids.values()
    )
    attrs = psutil.Process(ep.service_pids["canary"]).environ()["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    assert {
        "service.name=checkout",
        "service.version=v1.1.0",
        "deployment.environment=lab",
        "k8s.pod.label.track=canary",
    } == set(attrs)  # the track tells the profiles pane which is canary


def test_cli_status_shows_every_part_healthy(lab, capsys):
    poll(lambda: manager.status(CFG).healthy, "lab healthy")
    assert cli_main(["lab", "status", "--instance", "t"]) == 0
    out = capsys.readouterr().out
    for part in ("network", "stable", "canary", "haproxy", "prometheus", "loadgen"):
        line = next(ln for ln in out.splitlines() if ln.startswith(part))
        assert " ok " in line, line
    assert "targets up 3/3" in out


def test_lab_recovers_after_its_processes_are_sigkilled(lab):
    st = statefile.load(Layout(CFG).state_file)
    for rec in st.processes:
        os.kill(rec.pid, signal.SIGKILL)
    poll(lambda: not any(procs.alive(r) for r in st.processes), "lab processes gone")
    status = manager.status(CFG)
    assert not status.healthy
    assert {p.part for p in status.parts if not p.ok} >= {
        "stable",
        "canary",
        "haproxy",
        "prometheus",
        "loadgen",
    }

    said: list[str] = []
    manager.up(CFG, said.append)
    assert said[0].startswith("cleaning leftovers")
    assert any("namespace ebt-t-lb" in s for s in said) and any(st.tmpdir in s for s in said)
    assert not os.path.exists(st.tmpdir)
    poll(lambda: manager.status(CFG).healthy, "lab healthy again after recovery")
    poll(lambda: value('sum(rate(http_requests_total{track="canary"}[3s]))'), "traffic flowing again")


def test_lab_down_leaves_nothing_behind(lab, capsys):
    manager.up(CFG)  # no-op when up; keeps this test independent of order
    st = statefile.load(Layout(CFG).state_file)
    assert leftovers(CFG, st)  # sanity: there is something to remove
    pids = [p.pid for p in st.processes]
    assert cli_main(["lab", "down", "--instance", "t"]) == 0
    assert leftovers(CFG, st) == []
    assert not any(psutil.pid_exists(p) and procs.alive(r) for p, r in zip(pids, st.processes, strict=True))
    assert not os.path.exists(st.tmpdir)
    capsys.readouterr()
    assert cli_main(["lab", "down", "--instance", "t"]) == 0
    assert "not up" in capsys.readouterr().out
    assert cli_main(["lab", "status", "--instance", "t"]) == 3


# ------------------------------------------------------------------------ faults


@pytest.fixture
def fault_lab():
    _needs()
    manager.down(FAULT)
    yield FAULT
    manager.down(FAULT)


def test_busy_prometheus_port_is_named_and_nothing_is_left(fault_lab):
    with socket.socket() as s:
        s.bind(("127.0.0.1", FAULT.prometheus_port))
        s.listen()
        with pytest.raises(LabError) as exc:
            manager.up(FAULT)
    assert exc.value.part == "prometheus"
    assert f"127.0.0.1:{FAULT.prometheus_port} is busy" in str(exc.value)
    assert leftovers(FAULT, None) == []


def test_missing_binary_is_named(fault_lab):
    cfg = dataclasses.replace(FAULT, haproxy_bin="/nonexistent/haproxy")
    with pytest.raises(LabError) as exc:
        manager.up(cfg)
    assert (
        exc.value.part == "haproxy"
        and "/nonexistent/haproxy" in str(exc.value)
        and "not found" in str(exc.value)
    )
    assert leftovers(FAULT, None) == []


def test_part_failing_to_start_stops_everything_already_started(fault_lab, tmp_path):
    fake = tmp_path / "haproxy"
    fake.write_text("#!/bin/sh\necho 'cannot bind: simulated failure' >&2\nexit 3\n")
    fake.chmod(0o755)
    cfg = dataclasses.replace(FAULT, haproxy_bin=str(fake))
    said: list[str] = []
    with pytest.raises(LabError) as exc:
        manager.up(cfg, said.append)
    assert exc.value.part == "haproxy"
    assert "exited with code 3" in str(exc.value) and "simulated failure" in str(exc.value)
    # The services had started before HAProxy failed; they are gone again, and so is the rest.
    assert any(s.startswith("stable:") for s in said)
    assert any("removed process stable" in s for s in said)
    started = [int(s.split()[2].rstrip(",")) for s in said if s.startswith(("stable:", "canary:"))]
    assert len(started) == 2
    assert not [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert leftovers(FAULT, None) == []


def test_down_with_an_unreadable_state_file_still_cleans_up(fault_lab, capsys):
    lay = Layout(FAULT)
    os.makedirs(os.path.dirname(lay.state_file), exist_ok=True)
    with open(lay.state_file, "w") as f:
        f.write("{truncated")
    assert cli_main(["lab", "status", "--instance", "tf"]) == 1
    assert lay.state_file in capsys.readouterr().err
    assert cli_main(["lab", "down", "--instance", "tf"]) == 0
    out = capsys.readouterr().out
    assert "ignoring" in out and f"removed state file {lay.state_file}" in out
    assert leftovers(FAULT, None) == []


def test_lab_up_killed_midway_is_cleaned_up_by_down(fault_lab):
    lay = Layout(FAULT)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ebpftop.cli.main",
            "lab",
            "up",
            "--instance",
            FAULT.name,
            "--subnet",
            FAULT.subnet,
            "--prometheus-port",
            str(FAULT.prometheus_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def some_process_started():
            try:
                st = statefile.load(lay.state_file)
            except statefile.StateFileError:
                return None
            return st if st and st.processes else None

        poll(some_process_started, "`lab up` recording its first process")
    finally:
        cli.kill()
        cli.wait()
    st = statefile.load(lay.state_file)
    assert not st.complete
    status = manager.status(FAULT)
    assert not status.healthy and any(p.part == "lab" and not p.ok for p in status.parts)
    orphans = [p for p in st.processes if procs.alive(p)]
    assert orphans  # the crash left running processes behind
    removed = manager.down(FAULT)
    assert any(f"pid {orphans[0].pid}" in r for r in removed)
    assert leftovers(FAULT, st) == []


def test_down_without_state_removes_leftover_dirs_but_spares_other_programs(fault_lab):
    leftover = tempfile.mkdtemp(prefix=Layout(FAULT).tmp_prefix)
    viewer = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"{leftover}/haproxy.log"]
    )
    try:
        removed = manager.down(FAULT)
        assert f"temp dir {leftover}" in removed
        assert viewer.poll() is None  # a user's program that mentions the dir is not ours to kill
    finally:
        viewer.kill()
        viewer.wait()
    assert leftovers(FAULT, None) == []
