"""Access to a Kubernetes API server: from a kubeconfig or the in-cluster service account.

Supported credentials: bearer token (inline or tokenFile), client certificate and key
(files or -data), basic auth. `exec` and `auth-provider` plugins are not run (running a
program named in a file, as root, is not something a dashboard should do); they are
reported with what to use instead. TLS is verified unless the kubeconfig itself says
insecure-skip-tls-verify, and the client says so when it is off.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .base import ControllerError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeAccess:
    server: str
    source: str  # "kubeconfig FILE, context NAME" or "in-cluster service account"
    namespace: str | None = None  # the context's (or service account's) namespace
    token: str | None = None
    token_source: str = ""  # where the token came from, for the dry run (never the token)
    basic: tuple[str, str] | None = None
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False

    def auth_header_shown(self) -> tuple[str, str] | None:
        if self.token:
            return ("Authorization", f"Bearer <token from {self.token_source}>")
        if self.basic:
            return ("Authorization", f"Basic <user {self.basic[0]} and password from {self.source}>")
        return None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.basic:
            raw = f"{self.basic[0]}:{self.basic[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return True  # plain http: nothing to verify (shown as such in the endpoint)
        if self.insecure:
            return False
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        except (OSError, ssl.SSLError) as exc:
            raise ControllerError(f"{self.source}: cannot load the cluster CA: {exc}") from None
        if self.cert_file or self.cert_data:
            _load_client_cert(ctx, self)
        return ctx

    def client(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.server,
            headers=self.headers(),
            verify=self.ssl_context(),
            timeout=timeout,
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )


def _load_client_cert(ctx: ssl.SSLContext, access: KubeAccess) -> None:
    # ssl loads certificates from files only: -data goes to a private temp dir for the load.
    with tempfile.TemporaryDirectory(prefix="ebpftop-kube-") as tmp:
        cert, key = access.cert_file, access.key_file
        if access.cert_data is not None:
            cert = os.path.join(tmp, "cert.pem")
            Path(cert).write_bytes(access.cert_data)
        if access.key_data is not None:
            key = os.path.join(tmp, "key.pem")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(access.key_data)
        assert cert is not None  # loaded only when the user has a certificate
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ControllerError(f"{access.source}: cannot load the client certificate: {exc}") from None


def default_kubeconfig(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    first = (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
    return first or os.path.expanduser("~/.kube/config")


def in_cluster(env: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> KubeAccess | None:
    """The pod's service account, when running in a cluster; else None."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = sa_dir / "token"
    if not host or not token_file.exists():
        return None
    host = f"[{host}]" if ":" in host else host
    try:
        token = token_file.read_text().strip()
        ns = (sa_dir / "namespace").read_text().strip() if (sa_dir / "namespace").exists() else None
    except OSError as exc:
        raise ControllerError(f"in-cluster service account {sa_dir}: {exc.strerror or exc}") from None
    return KubeAccess(
        server=f"https://{host}:{port}",
        source="in-cluster service account",
        namespace=ns,
        token=token,
        token_source=str(token_file),
        ca_file=str(sa_dir / "ca.crt"),
    )


def load_kubeconfig(path: str, context: str | None = None) -> KubeAccess:
    """Parse a kubeconfig; raises ControllerError naming the file, context and problem."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ControllerError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ControllerError(
            f"kubeconfig {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(doc, dict):
        raise ControllerError(f"kubeconfig {path}: not a kubeconfig (expected a mapping at the top)")
    name = context or doc.get("current-context")
    if not name:
        raise ControllerError(f"kubeconfig {path}: no current-context; set [rollout] argo_context")
    ctx = _named(doc, "contexts", name, path).get("context") or {}
    source = f"kubeconfig {path}, context {name}"
    cluster = _named(doc, "clusters", ctx.get("cluster"), path).get("cluster") or {}
    user = (_named(doc, "users", ctx.get("user"), path).get("user") or {}) if ctx.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ControllerError(f"{source}: cluster {ctx.get('cluster')!r} has no https:// server")
    base = Path(path).parent

    def rel(p: object) -> str | None:
        return str(base / str(p)) if p else None

    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise ControllerError(
                f"{source}: user {ctx.get('user')!r} uses an {plugin} plugin, which ebpftop does not run; "
                "use a context with a token, tokenFile or client certificate (e.g. a service account token)"
            )
    token, token_source = user.get("token"), f"{source}, user {ctx.get('user')}"
    if not token and user.get("tokenFile"):
        tf = str(base / str(user["tokenFile"]))
        try:
            token = Path(tf).read_text().strip()
        except OSError as exc:
            raise ControllerError(f"{source}: tokenFile {tf}: {exc.strerror or exc}") from None
        token_source = tf
    basic = (str(user["username"]), str(user.get("password", ""))) if user.get("username") else None
    return KubeAccess(
        server=server.rstrip("/"),
        source=source,
        namespace=ctx.get("namespace"),
        token=str(token) if token else None,
        token_source=token_source,
        basic=basic,
        ca_file=rel(cluster.get("certificate-authority")),
        ca_data=_b64_text(cluster.get("certificate-authority-data"), source, "certificate-authority-data"),
        cert_file=rel(user.get("client-certificate")),
        key_file=rel(user.get("client-key")),
        cert_data=_b64(user.get("client-certificate-data"), source, "client-certificate-data"),
        key_data=_b64(user.get("client-key-data"), source, "client-key-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def _named(doc: dict[str, Any], section: str, name: object, path: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise ControllerError(f"kubeconfig {path}: no entry named {name!r} in {section}")


def _b64_text(value: object, source: str, key: str) -> str | None:
    raw = _b64(value, source, key)
    return None if raw is None else raw.decode("ascii", "replace")


def _b64(value: object, source: str, key: str) -> bytes | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ControllerError(f"{source}: {key} is not base64") from None
    return raw


def load_access(kubeconfig: str | None, context: str | None) -> KubeAccess:
    """Explicit kubeconfig first; else in-cluster when in a pod; else $KUBECONFIG or ~/.kube/config."""
    if kubeconfig:
        return load_kubeconfig(kubeconfig, context)
    access = in_cluster()
    return access if access is not None else load_kubeconfig(default_kubeconfig(), context)
