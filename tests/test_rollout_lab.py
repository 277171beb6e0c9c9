"""Rollback on the lab's real HAProxy: the canary's weight goes to 0 and the canary
stops receiving requests (its own request counter stops), through the same gate and
audit log as the dashboard; kiosk refuses; a dry run sends nothing; a failure is audited.

One private lab instance ("rb", its own subnet and Prometheus port) serves the module;
each test starts from weights 50/50 with both servers ready.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import pytest
from conftest import need, need_root

from ebpftop.actions.rollback import run_rollback
from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.rollout.haproxy import HAProxyController
from ebpftop.collectors.rollout.runtime_api import RuntimeAPI
from ebpftop.core.audit import AuditLog, read_lines, verify
from ebpftop.core.gate import Gate
from ebpftop.core.settings import Settings
from ebpftop.lab import manager
from ebpftop.lab.layout import LabConfig, Layout
from ebpftop.lab.web import fetch

pytestmark = pytest.mark.integration

CFG = LabConfig(name="rb", subnet="198.18.220.0/24", prometheus_port=19220, rate=40, weights=(50, 50))
DEADLINE = 30.0


@pytest.fixture(scope="module")
def lab():
    need_root()
    for binary in ("haproxy", "prometheus", "ip"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    try:
        manager.up(CFG)
        ep = manager.endpoints(CFG)
        assert ep is not None
        yield ep
    finally:
        manager.down(CFG)


@pytest.fixture
def api(lab) -> RuntimeAPI:
    api = RuntimeAPI(lab.haproxy_socket)
    for server in ("stable", "canary"):
        api.set_state("be_app", server, "ready")
        api.set_weight("be_app", server, 50)
    return api


@pytest.fixture
def files(tmp_path, lab):
    """A config file wired to the lab (as --lab would) with a private audit log and key."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[audit]\nlog = "{tmp_path}/audit.jsonl"\nkey = "{tmp_path}/audit.key"\n'
        f'[rollout]\ncontroller = "haproxy"\nhaproxy_socket = "{lab.haproxy_socket}"\nservice = "default"\n'
        f'[canary]\nprometheus_url = "{lab.prometheus_url}"\n'
    )
    cfg.chmod(0o600)
    return cfg, tmp_path / "audit.jsonl", tmp_path / "audit.key"


def entries(path) -> list[dict]:
    lines, _ = read_lines(path)
    return [json.loads(line) for line in lines]


def canary_requests() -> float:
    """The canary's own request counter, scraped from the canary service itself."""
    code, body = fetch(Layout(CFG).service_url("canary") + "/metrics", timeout=2.0)
    assert code == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("http_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def poll(fn, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {deadline:g}s (last: {last!r})")


def test_rollback_takes_the_canary_out_of_traffic_and_is_audited(api, files, capsys):
    cfg, log, key = files
    start = canary_requests()
    poll(lambda: canary_requests() > start + 5, "canary receiving requests before the rollback")

    code = cli_main(["--config", str(cfg), "rollback", "default", "--yes"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "set server be_app/canary weight 0" in out.out  # what was sent was shown
    assert api.weights("be_app") == {"stable": 50, "canary": 0}

    # In-flight requests may still land (later than a fixed second on a loaded machine);
    # once the counter stands still, it must stay so while stable serves the load.
    def standing_still():
        before = canary_requests()
        time.sleep(0.5)
        after = canary_requests()
        return (after,) if after == before else None

    (frozen,) = poll(standing_still, "canary's request counter standing still after the rollback")
    stable_url = Layout(CFG).service_url("stable") + "/metrics"

    def stable_total() -> float:
        body = fetch(stable_url)[1].decode()
        return sum(
            float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines() if ln.startswith("http_requests_total{")
        )

    s0 = stable_total()
    poll(lambda: stable_total() >= s0 + 60, "stable serving the whole load")
    assert canary_requests() == frozen

    intent, result = entries(log)[-2:]
    assert (intent["event"], result["event"], result["ok"], result["ref"]) == (
        "intent",
        "result",
        True,
        intent["seq"],
    )
    params = intent["action"]["params"]
    assert params["controller"] == "haproxy"
    assert [r["body"] for r in params["plan"]["requests"]] == ["set server be_app/canary weight 0"]
    assert params["evidence"] is not None and params["evidence"]["service"] == "default"
    assert "weight 0" in result["message"]
    assert verify(log, key).ok
    assert cli_main(["--config", str(cfg), "audit", "verify"]) == 0


def test_dry_run_sends_nothing_and_writes_nothing(api, files, capsys):
    cfg, log, _ = files
    code = cli_main(["--config", str(cfg), "rollback", "default", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: nothing is sent" in out
    assert "runtime-api " + manager.endpoints(CFG).haproxy_socket in out
    assert "set server be_app/canary weight 0" in out
    assert api.weights("be_app") == {"stable": 50, "canary": 50}
    assert not log.exists()


def test_kiosk_refuses_and_says_so_in_the_audit_log(api, files, capsys):
    cfg, log, _ = files
    code = cli_main(["--config", str(cfg), "--kiosk", "rollback", "default", "--yes"])
    assert code == 3
    assert "read-only" in capsys.readouterr().err
    assert api.weights("be_app") == {"stable": 50, "canary": 50}
    assert [e["event"] for e in entries(log)] == ["refused"]


def test_typing_the_wrong_name_cancels(api, files, capsys, monkeypatch):
    cfg, log, _ = files
    monkeypatch.setattr("sys.stdin", io.StringIO("defaul\n"))
    code = cli_main(["--config", str(cfg), "rollback", "default"])
    assert code == 3
    assert "Type the service name (default)" in capsys.readouterr().out
    assert api.weights("be_app") == {"stable": 50, "canary": 50}
    assert [e["event"] for e in entries(log)] == ["cancelled"]


def test_typing_the_name_confirms_and_drain_mode_drains(api, files, capsys, monkeypatch):
    cfg, log, _ = files
    cfg.write_text(
        cfg.read_text().replace('service = "default"', 'service = "default"\nhaproxy_rollback_mode = "drain"')
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("default\n"))
    assert cli_main(["--config", str(cfg), "rollback", "default"]) == 0
    canary = next(s for s in api.servers_state("be_app") if s.name == "canary")
    assert (canary.weight, canary.admin) == (0, "drain")
    assert [e["event"] for e in entries(log)] == ["intent", "result"]


async def test_a_failed_rollback_is_audited_as_failed(api, lab, tmp_path):
    # A canary server HAProxy does not have: HAProxy refuses the command itself.
    controller = HAProxyController("default", lab.haproxy_socket, canary=("ghost",))
    gate = Gate(AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.key"), read_only=False)

    async def yes(action):
        return True

    result = await run_rollback(gate, controller, "default", None, yes)
    assert not result.ok
    assert "No such server" in result.message and "nothing was applied" in result.message
    intent, res = entries(tmp_path / "audit.jsonl")
    assert (intent["event"], res["event"], res["ok"]) == ("intent", "result", False)
    assert "No such server" in res["message"]
    assert api.weights("be_app") == {"stable": 50, "canary": 50}


async def test_state_reports_revisions_weights_and_phase(api, lab):
    controller = HAProxyController("default", lab.haproxy_socket)
    state = await controller.state()
    assert (state.stable_revision, state.canary_revision) == ("stable", "canary")
    assert (state.stable_weight, state.canary_weight, state.phase) == (50.0, 50.0, "progressing")
    api.set_weight("be_app", "canary", 0)
    state = await controller.state()
    assert (state.stable_weight, state.canary_weight, state.phase) == (100.0, 0.0, "rolled back")
    assert state.last_change is not None


def test_lab_settings_make_haproxy_the_controller(lab):
    s = manager.wire_settings(Settings(), lab)
    assert (s.rollout_controller, s.rollout_haproxy_socket, s.rollout_haproxy_canary) == (
        "haproxy",
        lab.haproxy_socket,
        ("canary",),
    )


def test_headless_snapshot_carries_the_rollout_state(api, files, capsys):
    cfg, _, _ = files
    code = cli_main(["--config", str(cfg), "snapshot", "--json", "--source", "rollout", "--duration", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    entry = json.loads(out.out)["sources"]["rollout"]
    (svc,) = entry["data"]["services"]
    assert (svc["controller"], svc["canary_weight"], svc["stable_weight"], svc["phase"]) == (
        "haproxy",
        50.0,
        50.0,
        "progressing",
    )
