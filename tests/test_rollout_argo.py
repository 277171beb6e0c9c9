"""The Argo Rollouts controller against tests/k8s_contract.py.

No real Kubernetes API server can run here: these tests talk to a local HTTP(S) server
that follows the documented endpoints (Rollout GET, JSON merge patch on the status
subresource and the resource, SelfSubjectAccessReview) and their documented failure
answers (401, 403, 404, 409, 415, 422, 429 with Retry-After, stalls). What they prove
is that ebpftop sends the documented requests and handles every documented answer.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from k8s_contract import ContractServer, Fault, make_tls, status_doc

from ebpftop.actions.rollback import RollbackUnavailable, rollback_action, run_rollback
from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.rollout.argo import ArgoController, retry_after
from ebpftop.collectors.rollout.base import Conflict, ControllerError
from ebpftop.collectors.rollout.kube import KubeAccess, in_cluster, load_kubeconfig
from ebpftop.core.audit import AuditLog, read_lines
from ebpftop.core.gate import Gate

NS, NAME = "shop", "checkout"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def server():
    with ContractServer(ns=NS, name=NAME) as s:
        yield s


def controller(server, *, token="good-token", sleeps=None, timeout=5.0, **kw) -> ArgoController:
    access = KubeAccess(
        server=server.url, source="test kubeconfig", token=token, token_source="test token file"
    )
    return ArgoController(
        "checkout", access, namespace=NS, name=NAME, timeout=timeout, sleep=sleeps or Sleeps(), **kw
    )


async def yes(action) -> bool:
    return True


def gate(tmp_path) -> Gate:
    return Gate(AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.key"), read_only=False)


# ------------------------------------------------------------------------- reading


async def test_state_shows_revisions_weights_phase_and_step(server):
    c = controller(server)
    st = await c.state()
    assert (st.stable_revision, st.canary_revision) == ("6d4f8b7c9", "7f9c6d5b8")
    assert (st.stable_weight, st.canary_weight) == (80.0, 20.0)
    assert (st.phase, st.step, st.steps, st.message, st.version) == ("Paused", 1, 4, "CanaryPauseStep", "100")
    assert st.last_change is not None and st.can_rollback and st.rollback_reason == ""
    assert [r.path for r in server.requests] == [
        server.path,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    ]
    review = json.loads(server.requests[1].body)["spec"]["resourceAttributes"]
    assert review == {
        "namespace": NS,
        "verb": "patch",
        "group": "argoproj.io",
        "resource": "rollouts",
        "subresource": "status",
        "name": NAME,
    }
    await c.close()


async def test_weight_from_the_steps_when_no_traffic_router_reports_it(server):
    del server.rollout["status"]["canary"]
    server.rollout["status"]["currentStepIndex"] = 2
    st = await controller(server).state()
    assert (st.canary_weight, st.stable_weight) == (50.0, 50.0)


async def test_not_allowed_shows_rollback_disabled_with_the_reason_and_sends_nothing(server, tmp_path):
    server.allowed = False
    c = controller(server)
    st = await c.state()
    assert not st.can_rollback
    assert "not allowed to patch rollouts/status in namespace shop" in st.rollback_reason
    assert "rollouts-viewer" in st.rollback_reason
    with pytest.raises(RollbackUnavailable, match="disabled"):
        rollback_action(c, "checkout", None, state=st)
    # Even a plan built without that state is refused before the patch is sent.
    with pytest.raises(ControllerError, match="abort not sent"):
        await c.rollback(c.plan_rollback(st))
    assert server.patches() == []


async def test_a_failing_permission_check_still_shows_the_rollout_with_rollback_disabled(server):
    server.faults.append(
        Fault("POST", "selfsubjectaccessreviews", 500, status_doc(500, "InternalError", "etcd down"))
    )
    st = await controller(server).state()
    assert st.canary_weight == 20.0 and not st.can_rollback
    assert "cannot check permission" in st.rollback_reason and "HTTP 500: etcd down" in st.rollback_reason


# ------------------------------------------------------------------------- abort


async def test_abort_is_a_merge_patch_on_the_status_subresource(server, tmp_path):
    c = controller(server)
    st = await c.state()
    result = await run_rollback(gate(tmp_path), c, "checkout", None, yes, state=st)
    assert result.ok, result.message
    (patch,) = server.patches()
    assert patch.path == server.path + "/status"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(patch.body) == {"metadata": {"resourceVersion": "100"}, "status": {"abort": True}}
    assert server.rollout["status"]["abort"] is True
    assert "aborted rollout shop/checkout" in result.message and "Degraded" in result.message


async def test_404_on_the_status_subresource_falls_back_to_the_resource(tmp_path):
    with ContractServer(ns=NS, name=NAME, status_subresource=False) as server:
        c = controller(server)
        st = await c.state()
        result = await run_rollback(gate(tmp_path), c, "checkout", None, yes, state=st)
        assert result.ok, result.message
        assert [p.path for p in server.patches()] == [server.path + "/status", server.path]
        assert server.rollout["status"]["abort"] is True


async def test_404_everywhere_is_rollout_not_found(server):
    c = controller(server)
    st = await c.state()
    server.rollout = None
    with pytest.raises(ControllerError, match=r"rollout shop/checkout not found.*HTTP 404"):
        await c.rollback(c.plan_rollback(st))
    assert len(server.patches()) == 2
    with pytest.raises(ControllerError, match="not found"):
        await c.state()


async def test_401_says_the_credentials_were_rejected(server):
    c = controller(server, token="expired")
    with pytest.raises(ControllerError, match=r"unauthorized \(HTTP 401\).*test kubeconfig.*expired token"):
        await c.state()


async def test_403_carries_the_api_servers_reason(server):
    c = controller(server)
    st = await c.state()
    msg = (
        'rollouts.argoproj.io "checkout" is forbidden: User "oncall" cannot patch resource "rollouts/status"'
    )
    server.faults.append(Fault("PATCH", "/status", 403, status_doc(403, "Forbidden", msg)))
    with pytest.raises(ControllerError, match=r"forbidden \(HTTP 403\): .*cannot patch resource"):
        await c.rollback(c.plan_rollback(st))
    assert server.rollout["status"].get("abort") is None


async def test_409_rereads_reports_what_changed_and_asks_again(server, tmp_path):
    c = controller(server)
    st = await c.state()
    server.bump(currentStepIndex=2, message="CanaryStep 3/4")  # the rollout moved on meanwhile
    asked: list[str] = []

    async def confirm(action) -> bool:
        asked.append(action.description)
        return True

    result = await run_rollback(gate(tmp_path), c, "checkout", None, confirm, state=st)
    assert result.ok, result.message
    assert len(asked) == 2
    assert "THE ROLLOUT CHANGED" not in asked[0]
    assert "THE ROLLOUT CHANGED" in asked[1] and "step: 1 -> 2" in asked[1]
    bodies = [json.loads(p.body)["metadata"]["resourceVersion"] for p in server.patches()]
    assert bodies == ["100", "101"]  # the second patch is made from the re-read state
    events = [json.loads(line)["event"] for line in read_lines(tmp_path / "audit.jsonl")[0]]
    assert events == ["intent", "result", "intent", "result"]
    first = json.loads(read_lines(tmp_path / "audit.jsonl")[0][1])
    assert first["ok"] is False and "changed since it was read (HTTP 409)" in first["message"]


async def test_409_changes_are_against_what_the_operator_saw_not_the_latest_poll(server):
    c = controller(server)
    seen = await c.state()
    server.bump(currentStepIndex=2)
    await c.state()  # the rollout source polls meanwhile (same controller)
    server.bump(phase="Progressing")
    with pytest.raises(Conflict) as info:
        await c.rollback(c.plan_rollback(seen))
    assert info.value.changes == ["phase: Paused -> Progressing", "step: 1 -> 2"]


async def test_409_declined_the_second_time_applies_nothing(server, tmp_path):
    c = controller(server)
    st = await c.state()
    server.bump(phase="Progressing")
    answers = iter([True, False])

    async def confirm(action) -> bool:
        return next(answers)

    result = await run_rollback(gate(tmp_path), c, "checkout", None, confirm, state=st)
    assert result.cancelled
    assert server.rollout["status"].get("abort") is None


async def test_409_with_nothing_shown_changed_is_retried_at_the_new_version(server):
    c = controller(server)
    st = await c.state()
    server.bump()  # only resourceVersion moves (the controller rewrote its status)
    message = await c.rollback(c.plan_rollback(st))
    assert "aborted" in message
    assert [json.loads(p.body)["metadata"]["resourceVersion"] for p in server.patches()] == ["100", "101"]


async def test_conflict_exception_carries_the_changes(server):
    c = controller(server)
    st = await c.state()
    server.bump(phase="Healthy", stableRS="7f9c6d5b8")
    with pytest.raises(Conflict) as info:
        await c.rollback(c.plan_rollback(st))
    assert "phase: Paused -> Healthy" in info.value.changes
    assert "stable revision: 6d4f8b7c9 -> 7f9c6d5b8" in info.value.changes
    assert server.rollout["status"].get("abort") is None


async def test_422_reports_the_validation_causes(server):
    c = controller(server)
    st = await c.state()
    plan = c.plan_rollback(st)
    bad = json.loads(plan.requests[-1].body)
    bad["status"]["abort"] = "yes"
    from dataclasses import replace

    plan = replace(plan, requests=(*plan.requests[:-1], replace(plan.requests[-1], body=json.dumps(bad))))
    with pytest.raises(
        ControllerError, match=r"rejected as invalid \(HTTP 422\).*status\.abort: Invalid value"
    ):
        await c.rollback(plan)


async def test_429_waits_retry_after_then_succeeds(server):
    sleeps = Sleeps()
    c = controller(server, sleeps=sleeps)
    st = await c.state()
    server.faults.append(
        Fault(
            "PATCH",
            "/status",
            429,
            status_doc(429, "TooManyRequests", "slow down"),
            {"Retry-After": "2"},
            times=2,
        )
    )
    assert "aborted" in await c.rollback(c.plan_rollback(st))
    assert sleeps.calls == [2.0, 2.0]
    assert len(server.patches()) == 3


async def test_429_asking_for_too_long_a_wait_fails_without_waiting(server):
    sleeps = Sleeps()
    c = controller(server, sleeps=sleeps, max_wait=30)
    st = await c.state()
    server.faults.append(Fault("PATCH", "/status", 429, None, {"Retry-After": "120"}))
    with pytest.raises(ControllerError, match=r"throttling \(HTTP 429\).*120s"):
        await c.rollback(c.plan_rollback(st))
    assert sleeps.calls == []


async def test_429_forever_gives_up_after_the_retries(server):
    sleeps = Sleeps()
    c = controller(server, sleeps=sleeps, retries=2)
    server.faults.append(Fault("GET", NAME, 429, None, {"Retry-After": "1"}, times=99))
    with pytest.raises(ControllerError, match="still throttled \\(HTTP 429\\) after 2 retries"):
        await c.state()
    assert sleeps.calls == [1.0, 1.0]


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("7") == 7.0
    assert retry_after(None) == 1.0 and retry_after("soon") == 1.0
    assert 0 <= retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


async def test_a_stalled_patch_times_out_and_says_it_may_have_landed(server):
    c = controller(server, timeout=0.3)
    st = await c.state()
    server.faults.append(Fault("PATCH", "/status", 200, stall=5))
    with pytest.raises(
        ControllerError, match=r"no answer .* within 0\.3s; it may or may not have been applied"
    ):
        await c.rollback(c.plan_rollback(st))


async def test_dry_run_plan_names_every_request_without_the_token(server):
    c = controller(server)
    st = await c.state()
    text = c.plan_rollback(st).describe()
    assert f"PATCH {server.url}{server.path}/status" in text
    assert '{"metadata":{"resourceVersion":"100"},"status":{"abort":true}}' in text
    assert "Bearer <token from test token file>" in text and "good-token" not in text
    assert f"on 404 the same patch goes to {server.url}{server.path}" in text
    assert server.patches() == []


# --------------------------------------------------------------------- credentials


def kubeconfig(tmp_path, server_url: str, *, cluster: dict | None = None, user: dict | None = None) -> str:
    import yaml

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "clusters": [{"name": "c1", "cluster": {"server": server_url, **(cluster or {})}}],
        "users": [{"name": "u1", "user": user if user is not None else {"token": "good-token"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "c1", "user": "u1", "namespace": NS}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def tls_server(tmp_path):
    ca_pem, cert, key = make_tls(str(tmp_path))
    with ContractServer(ns=NS, name=NAME, tls=(cert, key)) as s:
        yield s, ca_pem


async def test_tls_is_verified_against_the_kubeconfig_ca(tls_server, tmp_path):
    server, ca_pem = tls_server
    ca = base64.b64encode(ca_pem.encode()).decode()
    access = load_kubeconfig(kubeconfig(tmp_path, server.url, cluster={"certificate-authority-data": ca}))
    assert (access.namespace, access.token) == (NS, "good-token")
    st = await ArgoController("checkout", access, namespace=NS, name=NAME).state()
    assert st.canary_weight == 20.0


async def test_tls_without_the_ca_fails_verification(tls_server, tmp_path):
    server, _ = tls_server
    access = load_kubeconfig(kubeconfig(tmp_path, server.url))
    with pytest.raises(ControllerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await ArgoController("checkout", access, namespace=NS, name=NAME).state()


async def test_insecure_skip_tls_verify_works_and_is_shown(tls_server, tmp_path):
    server, _ = tls_server
    access = load_kubeconfig(kubeconfig(tmp_path, server.url, cluster={"insecure-skip-tls-verify": True}))
    c = ArgoController("checkout", access, namespace=NS, name=NAME)
    st = await c.state()
    assert "TLS verification OFF" in st.endpoint


def test_kubeconfig_token_file_is_relative_to_the_kubeconfig(tmp_path):
    (tmp_path / "tok").write_text("from-file\n")
    access = load_kubeconfig(kubeconfig(tmp_path, "https://k8s.example:6443", user={"tokenFile": "tok"}))
    assert access.token == "from-file" and access.token_source == str(tmp_path / "tok")


def test_kubeconfig_problems_are_named(tmp_path):
    path = kubeconfig(tmp_path, "https://k8s.example:6443", user={"exec": {"command": "aws"}})
    with pytest.raises(ControllerError, match="user 'u1': exec: apiVersion None is not one of"):
        load_kubeconfig(path)
    gcp = kubeconfig(tmp_path, "https://k8s.example:6443", user={"auth-provider": {"name": "gcp"}})
    with pytest.raises(ControllerError, match=r"auth-provider plugin \(removed from kubectl in 1.26\)"):
        load_kubeconfig(gcp)
    with pytest.raises(ControllerError, match="no entry named 'nope' in contexts"):
        load_kubeconfig(path, "nope")
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n  - name: x\n  oops: : :\n")
    with pytest.raises(ControllerError, match=f"kubeconfig {bad} line \\d+: not valid YAML"):
        load_kubeconfig(str(bad))
    with pytest.raises(ControllerError, match="No such file"):
        load_kubeconfig(str(tmp_path / "missing"))


def test_in_cluster_service_account(tmp_path):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("shop")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster(env, tmp_path)
    assert (access.server, access.token, access.namespace, access.ca_file) == (
        "https://10.0.0.1:443",
        "sa-token",
        "shop",
        str(tmp_path / "ca.crt"),
    )
    assert in_cluster({}, tmp_path) is None


# ----------------------------------------------------------------------------- CLI


def test_cli_rollback_and_dry_run_against_the_contract_server(server, tmp_path, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[audit]\nlog = "{tmp_path}/audit.jsonl"\nkey = "{tmp_path}/audit.key"\n'
        f'[rollout]\ncontroller = "argo"\nservice = "checkout"\n'
        f'argo_kubeconfig = "{kubeconfig(tmp_path, server.url)}"\n'
    )
    os.chmod(cfg, 0o600)
    assert cli_main(["--config", str(cfg), "rollback", "checkout", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"PATCH {server.url}{server.path}/status" in out and server.patches() == []
    assert cli_main(["--config", str(cfg), "rollback", "nope", "--yes"]) == 2
    assert "configured service is 'checkout'" in capsys.readouterr().err
    assert cli_main(["--config", str(cfg), "rollback", "checkout", "--yes"]) == 0
    assert "aborted rollout shop/checkout" in capsys.readouterr().out
    assert server.rollout["status"]["abort"] is True
    events = [json.loads(line)["event"] for line in read_lines(tmp_path / "audit.jsonl")[0]]
    assert events == ["intent", "result"]
