"""The deploy files (deploy/): the Kubernetes manifests against the Kubernetes and Prometheus
Operator schemas vendored in tests/data/k8s-schema (see its README), the same capabilities in
the systemd unit, the DaemonSet and the Containerfile, and the container's command line parsed
by the real `ebpftop agent`. Static: no cluster here, and these tests build no image; the image
is built and run with podman by scripts/image_smoke.sh (`make image-smoke`: minutes and a few
hundred MB of downloads, so not part of `make test`; README "Deploy")."""

from __future__ import annotations

import copy
import gzip
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "data" / "k8s-schema"

# (apiVersion, kind) -> vendored schema; a manifest of any other kind fails the test.
SCHEMA_FILES = {
    ("v1", "Namespace"): "namespace-v1.json.gz",
    ("v1", "ServiceAccount"): "serviceaccount-v1.json.gz",
    ("v1", "Service"): "service-v1.json.gz",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "clusterrole-rbac-v1.json.gz",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "clusterrolebinding-rbac-v1.json.gz",
    ("apps/v1", "DaemonSet"): "daemonset-apps-v1.json.gz",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json.gz",
}


def _schema(name: str) -> dict[str, Any]:
    with gzip.open(SCHEMAS / name, "rt", encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema if name in STRICT_ALREADY else _strict(schema)


# The Kubernetes schemas come strict (additionalProperties: false) from their source; the CRD's
# does not, while the API server refuses unknown fields of a custom resource too under
# `kubectl apply`'s default field validation (Strict). Closed here the same way.
STRICT_ALREADY = {f for f in SCHEMA_FILES.values() if not f.endswith("-monitoring-v1.json.gz")}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        open_ = "properties" in node and "additionalProperties" not in node
        if open_ and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


def _errors(doc: dict[str, Any]) -> list[str]:
    schema = _schema(SCHEMA_FILES[(doc["apiVersion"], doc["kind"])])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    found = cls(schema).iter_errors(doc)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in found]


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in _docs() if d["kind"] == kind]
    return doc


def _container() -> dict[str, Any]:
    (c,) = _one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    return c


# --- the schemas --------------------------------------------------------------------------


def test_every_manifest_is_valid_against_its_schema() -> None:
    docs = _docs()
    kinds = {(d["apiVersion"], d["kind"]) for _, d in docs}
    assert kinds == set(SCHEMA_FILES), "a manifest without a vendored schema, or a schema unused"
    for name, doc in docs:
        assert _errors(doc) == [], f"{name} {doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize(
    ("kind", "path", "wrong"),
    [
        # a misspelt field, as strict schemas (additionalProperties: false) refuse
        ("DaemonSet", ["spec", "template", "spec"], ("hostPid", True)),
        ("DaemonSet", ["spec", "template", "spec", "containers", 0, "securityContext"], ("capabilites", {})),
        ("DaemonSet", ["spec", "template", "spec", "volumes", 0, "hostPath"], ("type", 3)),
        ("ServiceMonitor", ["spec", "endpoints", 0], ("intervall", "15s")),
        ("ClusterRole", ["rules", 0], ("verb", ["get"])),
    ],
)
def test_a_wrong_manifest_is_refused(kind: str, path: list[Any], wrong: tuple[str, Any]) -> None:
    doc = copy.deepcopy(_one(kind))
    node = doc
    for step in path:
        node = node[step]
    node[wrong[0]] = wrong[1]
    errors = _errors(doc)
    assert errors, f"{kind}: {wrong[0]} at {path} passed the schema"
    assert any(wrong[0] in e or "3 is not of type" in e for e in errors), errors


def test_a_missing_required_field_is_refused() -> None:
    doc = copy.deepcopy(_one("DaemonSet"))
    del doc["spec"]["selector"]
    assert any("'selector' is a required property" in e for e in _errors(doc))
    sm = copy.deepcopy(_one("ServiceMonitor"))
    del sm["spec"]["selector"]
    assert any("'selector' is a required property" in e for e in _errors(sm))


# --- what the schemas cannot see ------------------------------------------------------------


def test_the_pieces_refer_to_each_other() -> None:
    ds, svc, sm = _one("DaemonSet"), _one("Service"), _one("ServiceMonitor")
    sa, crb = _one("ServiceAccount"), _one("ClusterRoleBinding")
    ns = _one("Namespace")["metadata"]["name"]
    for _, doc in _docs():
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == ns, doc["kind"]
    pod = ds["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [ns]
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]
    assert crb["roleRef"]["name"] == _one("ClusterRole")["metadata"]["name"]
    # one port, named alike everywhere, and the one --metrics listens on
    (port,) = _container()["ports"]
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] == port["name"] == sm["spec"]["endpoints"][0]["port"] == svc_port["name"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    args = _container()["args"]
    assert args[args.index("--metrics") + 1].endswith(f":{port['containerPort']}")
    mounts = {m["name"] for m in _container()["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["spec"]["volumes"]}


def test_the_pod_has_the_host_views_and_mounts_the_agent_needs() -> None:
    spec = _one("DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"  # the API server by name on the host network
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in _container()["volumeMounts"]}
    host = {path: volumes[m["name"]].get("hostPath", {}).get("path") for path, m in mounts.items()}
    for path in ("/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/debug", "/lib/modules", "/usr/src"):
        assert host[path] == path
    for path in ("/lib/modules", "/usr/src"):
        assert mounts[path].get("readOnly") is True
    # the unix socket the agent is told to serve sits on the host's /run/ebpftop
    args = _container()["args"]
    sock = Path(args[args.index("--socket") + 1])
    assert host[str(sock.parent)] == str(sock.parent)
    # Bidirectional needs a privileged pod, which this one is not
    sc = _container()["securityContext"]
    assert sc["privileged"] is False
    assert all(m.get("mountPropagation") != "Bidirectional" for m in mounts.values())
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_the_node_name_reaches_the_kube_node_name_setting() -> None:
    from ebpftop.core.config import load_settings

    env = {e["name"]: e for e in _container()["env"]}
    assert env["EBPFTOP_KUBE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    settings = load_settings({}, env={"EBPFTOP_KUBE_NODE_NAME": "node-a"}, system_file=None, user_file=None)
    assert settings.kube_node_name == "node-a"


def test_the_rbac_grants_what_kube_pods_asks_and_no_writes() -> None:
    from ebpftop.collectors.identity import kube_pods

    rules = _one("ClusterRole")["rules"]
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert {("", "pods", v) for v in ("get", "list", "watch")} <= granted
    assert kube_pods.PODS == "/api/v1/pods"
    # the owner lookups kube_pods.py makes: /apis/<group>/v1/namespaces/{ns}/<resource>/{name}
    for url in kube_pods.OWNER_PATHS.values():
        m = re.fullmatch(r"/apis/([^/]+)/v1/namespaces/\{ns\}/([^/]+)/\{name\}", url)
        assert m, url
        assert (m[1], m[2], "get") in granted, url
    assert {v for _, _, v in granted} <= {"get", "list", "watch"}


# --- the same capabilities everywhere -----------------------------------------------------


def _unit_caps(key: str) -> set[str]:
    unit = (DEPLOY / "ebpftop-agent.service").read_text()
    (line,) = [ln for ln in unit.splitlines() if ln.startswith(key + "=")]
    return {c.removeprefix("CAP_") for c in line.split("=", 1)[1].split()}


def test_the_unit_the_daemonset_and_the_containerfile_ask_for_the_same_capabilities() -> None:
    bounding, ambient = _unit_caps("CapabilityBoundingSet"), _unit_caps("AmbientCapabilities")
    assert bounding == ambient and "BPF" in bounding
    added = _container()["securityContext"]["capabilities"]["add"]
    assert len(added) == len(set(added))
    assert set(added) == bounding
    (run_line,) = re.findall(r"--cap-add=(\S+)", (DEPLOY / "Containerfile").read_text())
    assert set(run_line.split(",")) == bounding


# --- the Containerfile ----------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Containerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _args_of(word: str) -> list[str]:
    return [rest for w, rest in _instructions() if w == word]


def test_the_containerfile_base_is_a_pinned_debian_bookworm() -> None:
    (base_arg,) = [a for a in _args_of("ARG") if a.startswith("BASE=")]
    base = base_arg.split("=", 1)[1]
    assert _args_of("FROM") == ["${BASE}"]
    image, _, tag = base.partition(":")
    assert image == "docker.io/library/debian"
    # a dated snapshot or a digest, never a moving tag (bookworm, bookworm-slim, latest)
    assert re.fullmatch(r"bookworm-\d{8}(-slim)?(@sha256:[0-9a-f]{64})?", tag), tag


def test_the_containerfile_installs_debians_bcc_and_nothing_from_a_pipe() -> None:
    runs = " ".join(_args_of("RUN"))
    assert re.search(r"apt-get install[^&]*\bpython3-bpfcc\b", runs)
    assert "--system-site-packages" in runs
    assert not re.search(r"\b(curl|wget)\b[^&;]*\|\s*(ba|z)?sh\b", runs)
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists" in runs
    # uid 0 and no HEALTHCHECK: the reasons are in the file's comments
    assert not _args_of("USER") and not _args_of("HEALTHCHECK")


def test_the_containerfile_copies_every_package_folder_that_exists() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = {p.split("/")[0] for p in pyproject["tool"]["setuptools"]["package-dir"].values()}
    copied = {}
    for rest in _args_of("COPY"):
        *sources, dest = shlex.split(rest)
        for src in sources:
            assert (ROOT / src).exists(), src
            copied[src] = dest
    assert folders <= copied.keys(), folders - copied.keys()
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied.keys()


def _command() -> list[str]:
    (entry,) = _args_of("ENTRYPOINT")
    (cmd,) = _args_of("CMD")
    return list(json.loads(entry)) + list(json.loads(cmd))


def test_the_entrypoint_is_the_installed_agent_in_exec_form() -> None:
    (entry,) = _args_of("ENTRYPOINT")
    argv = json.loads(entry)  # exec form: SIGTERM reaches the agent, not a shell
    assert argv == ["/opt/ebpftop/venv/bin/ebpftop", "agent"]
    runs = " ".join(_args_of("RUN"))
    assert "python3 -m venv --system-site-packages /opt/ebpftop/venv" in runs
    assert "/opt/ebpftop/venv/bin/pip install" in runs


def test_agent_help_answers() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for flag in ("--socket", "--metrics"):
        assert flag in proc.stdout


@pytest.mark.parametrize("source", ["Containerfile CMD", "DaemonSet args"])
def test_the_agent_parses_the_command_line_it_is_given(source: str) -> None:
    from ebpftop.cli.commands import agent
    from ebpftop.cli.main import build_parser
    from ebpftop.cli.metrics.server import parse_listen

    entry = _command()[1:2]  # "agent"
    if source == "Containerfile CMD":
        args = _command()[2:]
    else:
        # Kubernetes expands $(HOST_IP) from the env's status.hostIP before the agent sees it
        env = {e["name"] for e in _container()["env"]}
        args = []
        for a in _container()["args"]:
            for var in re.findall(r"\$\((\w+)\)", a):
                assert var in env, var
            args.append(re.sub(r"\$\(HOST_IP\)", "10.0.0.7", a))
    ns = build_parser().parse_args([*entry, *args])
    assert ns.func is agent.run
    assert ns.socket == "/run/ebpftop/agent.sock"
    host, port = parse_listen(ns.metrics)
    assert port == 9433 and host in ("0.0.0.0", "10.0.0.7")


# --- the image build and smoke test (run by hand: make image-smoke) ----------------------------


def test_the_base_is_an_arg_before_from_so_a_build_can_override_it() -> None:
    steps = _instructions()
    (base,) = [i for i, (w, rest) in enumerate(steps) if w == "ARG" and rest.startswith("BASE=")]
    # an ARG after FROM belongs to the stage, and FROM ${BASE} would not see it
    assert base < [w for w, _ in steps].index("FROM")
    script = (ROOT / "scripts" / "image_smoke.sh").read_text()
    assert '--build-arg "BASE=$BASE_IMAGE"' in script


def _make_n(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_image_and_image_smoke_run_the_script_and_make_test_does_not() -> None:
    script = ROOT / "scripts" / "image_smoke.sh"
    assert script.stat().st_mode & 0o111, "not executable"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    for target, argv in (
        ("image", "bash scripts/image_smoke.sh --build-only"),
        ("image-smoke", "bash scripts/image_smoke.sh"),
    ):
        dry = _make_n(target)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines()[-1] == argv, dry.stdout
    # minutes of downloads and builds: never under `make test`
    assert "image_smoke" not in _make_n("test").stdout
