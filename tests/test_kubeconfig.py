"""Kubeconfigs as people have them (collectors/rollout/kube.py, kube_auth.py, kube_merge.py).

No real Kubernetes API server (nor EKS/GKE/AKS) can run here: the requests go to
tests/k8s_contract.py over real TLS, the exec plugin is a small script written by the
test that answers an ExecCredential as the documented protocol says, and the proxy is a
local CONNECT proxy run by the test. What they prove: the credentials and connection
settings a kubeconfig names are the ones the requests carry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
import yaml
from k8s_contract import NODE, ContractServer, make_tls

from ebpftop.collectors.rollout.base import ControllerError
from ebpftop.collectors.rollout.kube import KubeAccess, in_cluster, load_access, load_kubeconfig

PODS = f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}"


def write_config(path: Path, *, current=None, clusters=(), users=(), contexts=()) -> str:
    doc: dict = {"apiVersion": "v1", "kind": "Config"}
    if current:
        doc["current-context"] = current
    doc["clusters"] = [{"name": n, "cluster": c} for n, c in clusters]
    doc["users"] = [{"name": n, "user": u} for n, u in users]
    doc["contexts"] = [{"name": n, "context": c} for n, c in contexts]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def get_pods(access: KubeAccess) -> int:
    async with access.client(5.0) as client:
        resp = await client.get(PODS)
        return resp.status_code


@pytest.fixture
def tls(tmp_path):
    ca, cert, key = make_tls(str(tmp_path))
    with ContractServer(token="good-token", tls=(cert, key)) as s:
        yield s, ca


# ------------------------------------------------------------------ exec plugins

PLUGIN = """#!{python}
import datetime, json, os, pathlib
runs = pathlib.Path({runs!r})
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
env = os.environ
pathlib.Path({info!r}).write_text(env.get("KUBERNETES_EXEC_INFO", "") + "\\n" + env.get("AWS_PROFILE", ""))
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
print(json.dumps({{
    "apiVersion": {version!r},
    "kind": "ExecCredential",
    "status": {{"token": f"exec-token-{{n}}", "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}},
}}))
"""


def plugin(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "bin" / "get-token"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        PLUGIN.format(
            python=sys.executable, runs=str(tmp_path / "runs"), info=str(tmp_path / "info"), version=version
        )
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    "version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
async def test_exec_plugin_runs_once_while_its_token_is_valid_and_again_after_expiry(tls, tmp_path, version):
    server, ca = tls
    plugin(tmp_path, version)
    exec_spec = {
        "apiVersion": version,
        "command": "./bin/get-token",  # relative to the kubeconfig's folder, as kubectl runs it
        "args": [],
        "env": [{"name": "AWS_PROFILE", "value": "oncall"}],
        "interactiveMode": "Never",
        "provideClusterInfo": True,
    }
    path = write_config(
        tmp_path / "config",
        current="eks",
        clusters=[("eks", {"server": server.url, "certificate-authority-data": b64(ca)})],
        users=[("arn", {"exec": exec_spec})],
        contexts=[("eks", {"cluster": "eks", "user": "arn"})],
    )
    access = load_kubeconfig(path)
    plug = access.exec_plugin
    assert plug is not None and plug.runs == 0  # nothing runs at load
    server.token = "exec-token-1"
    assert await get_pods(access) == 200 and await get_pods(access) == 200
    assert plug.runs == 1  # one run for both: the token is valid for an hour
    info, profile = (tmp_path / "info").read_text().split("\n")
    sent = json.loads(info)
    assert (sent["apiVersion"], sent["kind"], sent["spec"]["interactive"]) == (
        version,
        "ExecCredential",
        False,
    )
    assert sent["spec"]["cluster"]["server"] == server.url and profile == "oncall"

    real_now = plug.clock()
    plug.clock = lambda: real_now + 3600  # an hour later: the credential has expired
    server.token = "exec-token-2"
    assert await get_pods(access) == 200 and plug.runs == 2
    seen = [r.headers["Authorization"] for r in server.requests]
    assert seen == ["Bearer exec-token-1", "Bearer exec-token-1", "Bearer exec-token-2"]
    assert "exec plugin get-token" in access.auth_header_shown()[1]  # the dry run names it, not the token


async def test_a_401_runs_the_plugin_once_more(tls, tmp_path):
    server, ca = tls
    version = "client.authentication.k8s.io/v1"
    plugin(tmp_path, version)
    path = write_config(
        tmp_path / "config",
        current="c",
        clusters=[("k", {"server": server.url, "certificate-authority-data": b64(ca)})],
        users=[("u", {"exec": {"apiVersion": version, "command": str(tmp_path / "bin" / "get-token")}})],
        contexts=[("c", {"cluster": "k", "user": "u"})],
    )
    access = load_kubeconfig(path)
    server.token = "exec-token-1"
    assert await get_pods(access) == 200
    server.token = "exec-token-2"  # revoked early: the server now wants a new one
    assert await get_pods(access) == 200 and access.exec_plugin.runs == 2
    server.token = "something-else"
    assert await get_pods(access) == 401 and access.exec_plugin.runs == 3  # one retry, then the answer


async def test_exec_plugin_failures_are_named(tmp_path):
    bad = tmp_path / "bad-plugin"
    bad.write_text("#!/bin/sh\necho 'error: SSO session expired, run aws sso login' >&2\nexit 1\n")
    bad.chmod(0o755)
    version = "client.authentication.k8s.io/v1beta1"

    def access_with(command: str, hint: str = "") -> KubeAccess:
        spec = {"apiVersion": version, "command": command, "installHint": hint}
        path = write_config(
            tmp_path / "config",
            current="c",
            clusters=[("k", {"server": "https://127.0.0.1:1"})],
            users=[("u", {"exec": spec})],
            contexts=[("c", {"cluster": "k", "user": "u"})],
        )
        return load_kubeconfig(path)

    with pytest.raises(
        ControllerError, match="exec plugin bad-plugin: exited with 1: error: SSO session expired"
    ):
        await get_pods(access_with(str(bad)))
    with pytest.raises(ControllerError, match=r"cannot run no-such-plugin-here: .*install it from"):
        await get_pods(access_with("no-such-plugin-here", "install it from the vendor"))
    wrong = tmp_path / "wrong"
    wrong.write_text(
        '#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}\'\n'
    )
    wrong.chmod(0o755)
    with pytest.raises(ControllerError, match=r"answered apiVersion 'client\.authentication\.k8s\.io/v1'"):
        await get_pods(access_with(str(wrong)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the check is for root")
def test_as_root_an_exec_plugin_runs_only_from_a_kubeconfig_root_owns(tmp_path):
    path = write_config(
        tmp_path / "config",
        current="c",
        clusters=[("k", {"server": "https://127.0.0.1:1"})],
        users=[("u", {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}})],
        contexts=[("c", {"cluster": "k", "user": "u"})],
    )
    os.chown(path, 65534, 65534)
    with pytest.raises(ControllerError, match=r"not run as root from .*which another user owns"):
        load_kubeconfig(path)
    os.chown(path, 0, 0)
    os.chmod(path, 0o666)
    with pytest.raises(ControllerError, match="others may write"):
        load_kubeconfig(path)
    os.chmod(path, 0o600)
    assert load_kubeconfig(path).exec_plugin is not None


# ------------------------------------------------------------------ merged KUBECONFIG


async def test_a_kubeconfig_list_merges_as_kubectl_does(tls, tmp_path, monkeypatch):
    server, ca = tls
    first = write_config(
        tmp_path / "a" / "config",
        current="work",
        clusters=[("prod", {"server": server.url, "certificate-authority-data": b64(ca)})],
        users=[("oncall", {"tokenFile": "token"})],  # relative to a/
    )
    (tmp_path / "a" / "token").write_text("good-token\n")
    second = write_config(
        tmp_path / "b" / "config",
        current="other",  # the first file's current-context wins
        clusters=[("prod", {"server": "https://127.0.0.1:1"})],  # the first file's prod wins whole
        users=[("oncall", {"token": "from-the-second-file"})],
        contexts=[
            ("work", {"cluster": "prod", "user": "oncall", "namespace": "shop"}),
            ("other", {"cluster": "x"}),
        ],
    )
    missing = str(tmp_path / "nowhere" / "config")  # skipped, as kubectl skips it
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([missing, first, second]))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    access = load_access(None, None)
    assert (access.server, access.namespace, access.token) == (server.url, "shop", "good-token")
    assert access.token_source == str(tmp_path / "a" / "token")
    assert access.source == f"kubeconfig {second}, context work"  # where the context came from
    assert await get_pods(access) == 200
    with pytest.raises(ControllerError, match="no entry named 'x' in clusters"):
        load_access(None, "other")
    monkeypatch.setenv("KUBECONFIG", missing)
    with pytest.raises(ControllerError, match="No such file"):
        load_access(None, None)


# ------------------------------------------------------------------ tls-server-name, proxy-url


@pytest.fixture
def named_tls(tmp_path):
    """A server whose certificate names api.cluster.internal only, reached at 127.0.0.1."""
    ca, cert, key = make_tls(str(tmp_path), dns=("api.cluster.internal",))
    with ContractServer(token="good-token", tls=(cert, key)) as s:
        yield s, ca


def named_config(tmp_path: Path, server_url: str, ca: str, **cluster) -> str:
    return write_config(
        tmp_path / "config",
        current="c",
        clusters=[("k", {"server": server_url, "certificate-authority-data": b64(ca), **cluster})],
        users=[("u", {"token": "good-token"})],
        contexts=[("c", {"cluster": "k", "user": "u"})],
    )


async def test_tls_server_name_is_the_name_the_certificate_is_checked_for(named_tls, tmp_path):
    server, ca = named_tls
    plain = load_kubeconfig(named_config(tmp_path, server.url, ca))
    with pytest.raises(Exception, match=r"IP address mismatch|doesn't match|CERTIFICATE_VERIFY_FAILED"):
        await get_pods(plain)
    named = load_kubeconfig(
        named_config(tmp_path, server.url, ca, **{"tls-server-name": "api.cluster.internal"})
    )
    assert named.tls_server_name == "api.cluster.internal"
    assert await get_pods(named) == 200
    wrong = load_kubeconfig(named_config(tmp_path, server.url, ca, **{"tls-server-name": "evil.example"}))
    with pytest.raises(Exception, match=r"doesn't match|CERTIFICATE_VERIFY_FAILED"):
        await get_pods(wrong)


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback that keeps the targets it was asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            head += data
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        self.targets.append(f"{method} {target}")
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host != "127.0.0.1":  # loopback only
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
        pipe(conn, upstream)


async def test_proxy_url_tunnels_through_the_proxy_and_keeps_the_tls_server_name(
    named_tls, tmp_path, monkeypatch
):
    server, ca = named_tls
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # never used: only the kubeconfig's proxy
    with ConnectProxy() as proxy:
        access = load_kubeconfig(
            named_config(
                tmp_path,
                server.url,
                ca,
                **{"proxy-url": proxy.url, "tls-server-name": "api.cluster.internal"},
            )
        )
        assert await get_pods(access) == 200
        assert proxy.targets == [f"CONNECT {server.url.removeprefix('https://')}"]
    bad = named_config(tmp_path, server.url, ca, **{"proxy-url": "ftp://127.0.0.1:21"})
    with pytest.raises(ControllerError, match=r"proxy-url 'ftp://127\.0\.0\.1:21' must be http, https"):
        load_kubeconfig(bad)


# ------------------------------------------------------------------ service-account token rotation


def rotate(sa_dir: Path, token: str, n: int) -> None:
    """Write the token as the kubelet does: a new timestamped folder, then ..data swapped to it."""
    folder = sa_dir / f"..2026_12_07_{n:02d}"
    folder.mkdir()
    (folder / "token").write_text(token)
    link = sa_dir / f"..data_tmp{n}"
    os.symlink(folder.name, link)
    os.replace(link, sa_dir / "..data")


async def test_service_account_token_is_read_again_when_the_kubelet_rotates_it(tls, tmp_path):
    server, ca = tls
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_text(ca)
    (sa / "namespace").write_text("monitoring")
    rotate(sa, "sa-token-1", 1)
    os.symlink("..data/token", sa / "token")
    port = server.url.rsplit(":", 1)[1]
    access = in_cluster({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}, sa)
    assert access is not None and access.namespace == "monitoring"
    async with access.client(5.0) as client:
        server.token = "sa-token-1"
        assert (await client.get(PODS)).status_code == 200
        rotate(sa, "sa-token-2", 2)
        server.token = "sa-token-2"
        assert (await client.get(PODS)).status_code == 200  # the same client: the next request
        (sa / "..data" / "token").write_text("sa-token-3-longer")  # rewritten in place, too
        server.token = "sa-token-3-longer"
        assert (await client.get(PODS)).status_code == 200
    seen = [r.headers["Authorization"] for r in server.requests]
    assert seen == ["Bearer sa-token-1", "Bearer sa-token-2", "Bearer sa-token-3-longer"]
