"""Access to a Kubernetes API server: from a kubeconfig or the in-cluster service account.

Hand-written on purpose (the measurement and the comparison with the kubernetes,
lightkube and kr8s loaders: collectors/rollout/README.md, "Kubernetes access").
What it reads, as kubectl does:
- a `KUBECONFIG` of several files (colon-separated): missing files are skipped, the
  first file to name a cluster, user or context wins it, the first current-context
  wins, relative paths are relative to the file that holds them (`kube_merge.py`);
- credentials: bearer token (inline or tokenFile, re-read when it changes), client
  certificate and key (files or -data), basic auth, and `exec` plugins
  (ExecCredential v1 and v1beta1, the token kept until its expirationTimestamp;
  `kube_auth.py`). As root, an exec plugin runs only from a kubeconfig file that root
  owns and nobody else may write: otherwise any user who can edit that file would run
  programs as root. `auth-provider` (removed from kubectl in 1.26) is reported.
- cluster: server, certificate-authority(-data), insecure-skip-tls-verify (said so
  wherever the endpoint is shown), tls-server-name, proxy-url (http, https; socks5
  with httpx's socks extra). No proxy is taken from the environment.
- in-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account's token, re-read
  when the kubelet rotates it.
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

from ..identity.kube_where import SA_DIR, default_kubeconfig
from .base import ControllerError
from .kube_auth import EXEC_VERSIONS, ExecPlugin, KubeAuth, TokenFile, tls_context
from .kube_merge import Entry, merged

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
# kubeconfig cluster keys -> the ExecCredential Cluster fields a plugin is given (provideClusterInfo)
CLUSTER_INFO = {
    "server": "server",
    "tls-server-name": "tlsServerName",
    "insecure-skip-tls-verify": "insecureSkipTLSVerify",
    "certificate-authority-data": "certificateAuthorityData",
    "proxy-url": "proxyURL",
}


@dataclass(frozen=True)
class KubeAccess:
    server: str
    source: str  # "kubeconfig FILE, context NAME" or "in-cluster service account"
    namespace: str | None = None  # the context's (or service account's) namespace
    token: str | None = None  # as read when loaded; a token_file is read again when it changes
    token_source: str = ""  # where the token came from, for the dry run (never the token)
    basic: tuple[str, str] | None = None
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False
    token_file: str | None = None
    exec_plugin: ExecPlugin | None = None
    tls_server_name: str | None = None
    proxy_url: str | None = None

    def auth_header_shown(self) -> tuple[str, str] | None:
        if self.exec_plugin is not None:
            return (
                "Authorization",
                f"Bearer <token from the {self.exec_plugin.describe()} of {self.source}>",
            )
        if self.token or self.token_file:
            return ("Authorization", f"Bearer <token from {self.token_source}>")
        if self.basic:
            return ("Authorization", f"Basic <user {self.basic[0]} and password from {self.source}>")
        return None

    def headers(self) -> dict[str, str]:
        """Fixed credentials; those that change (token file, exec) are `auth()`'s."""
        if self.exec_plugin is not None or self.token_file:
            return {}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.basic:
            raw = f"{self.basic[0]}:{self.basic[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def auth(self) -> KubeAuth | None:
        if self.exec_plugin is not None:
            return KubeAuth(self.exec_plugin)
        if self.token_file:
            return KubeAuth(TokenFile(self.token_file, self.source))
        return None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return True  # plain http: nothing to verify (shown as such in the endpoint)
        if self.insecure:
            return False
        try:
            ctx = tls_context(self.ca_file, self.ca_data, self.tls_server_name)
        except (OSError, ssl.SSLError) as exc:
            raise ControllerError(f"{self.source}: cannot load the cluster CA: {exc}") from None
        if self.cert_file or self.cert_data:
            _load_client_cert(ctx, self)
        return ctx

    def client(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        if transport is None:
            try:
                proxy = httpx.Proxy(self.proxy_url) if self.proxy_url else None  # a str is 0.26+
                transport = httpx.AsyncHTTPTransport(verify=self.ssl_context(), proxy=proxy, trust_env=False)
            except ImportError as exc:  # socks5 without httpx[socks]
                raise ControllerError(f"{self.source}: proxy-url {self.proxy_url}: {exc}") from None
        return httpx.AsyncClient(
            base_url=self.server,
            headers=self.headers(),
            auth=self.auth(),
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


def in_cluster(env: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR) -> KubeAccess | None:
    """The pod's service account, when running in a cluster; else None."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = sa_dir / "token"
    if not host or not token_file.exists():
        return None
    host = f"[{host}]" if ":" in host else host
    source = "in-cluster service account"
    try:
        ns = (sa_dir / "namespace").read_text().strip() if (sa_dir / "namespace").exists() else None
    except OSError as exc:
        raise ControllerError(f"{source} {sa_dir}: {exc.strerror or exc}") from None
    return KubeAccess(
        server=f"https://{host}:{port}",
        source=source,
        namespace=ns,
        token=TokenFile(str(token_file), source).token(),
        token_source=str(token_file),
        token_file=str(token_file),
        ca_file=str(sa_dir / "ca.crt"),
    )


def load_kubeconfig(path: str, context: str | None = None) -> KubeAccess:
    """Parse a kubeconfig, or several merged (os.pathsep-separated, as $KUBECONFIG).

    Raises ControllerError naming the file, context and problem."""
    cfg = merged(path)
    name = context or cfg.current_context
    if not name:
        raise ControllerError(f"kubeconfig {cfg.shown}: no current-context; set [rollout] argo_context")
    ctx_entry = cfg.entry("contexts", name)
    ctx = ctx_entry.body("context")
    source = f"kubeconfig {ctx_entry.file}, context {name}"
    cl_entry = cfg.entry("clusters", ctx.get("cluster"))
    cluster = cl_entry.body("cluster")
    user_entry = cfg.entry("users", ctx.get("user")) if ctx.get("user") else None
    user = user_entry.body("user") if user_entry else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ControllerError(f"{source}: cluster {ctx.get('cluster')!r} has no https:// server")

    if user.get("auth-provider"):
        raise ControllerError(
            f"{source}: user {ctx.get('user')!r} uses an auth-provider plugin "
            "(removed from kubectl in 1.26); use its exec plugin (e.g. gke-gcloud-auth-plugin, "
            "kubelogin) or a token"
        )
    plugin = _exec_plugin(user_entry, user, source, cluster) if user_entry and user.get("exec") else None
    token, token_file, token_source = user.get("token"), None, f"{source}, user {ctx.get('user')}"
    if not token and user.get("tokenFile") and user_entry is not None:
        token_file = str(Path(user_entry.file).parent / str(user["tokenFile"]))
        token, token_source = TokenFile(token_file, source).token(), token_file
    basic = (str(user["username"]), str(user.get("password", ""))) if user.get("username") else None
    return KubeAccess(
        server=server.rstrip("/"),
        source=source,
        namespace=ctx.get("namespace"),
        token=str(token) if token else None,
        token_source=token_source,
        basic=basic,
        ca_file=cl_entry.rel(cluster.get("certificate-authority")),
        ca_data=_b64_text(cluster.get("certificate-authority-data"), source, "certificate-authority-data"),
        cert_file=user_entry.rel(user.get("client-certificate")) if user_entry else None,
        key_file=user_entry.rel(user.get("client-key")) if user_entry else None,
        cert_data=_b64(user.get("client-certificate-data"), source, "client-certificate-data"),
        key_data=_b64(user.get("client-key-data"), source, "client-key-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token_file=token_file,
        exec_plugin=plugin,
        tls_server_name=_optional_str(cluster, "tls-server-name", source),
        proxy_url=_proxy(cluster, source),
    )


def _exec_plugin(entry: Entry, user: dict[str, Any], source: str, cluster: dict[str, Any]) -> ExecPlugin:
    spec = user["exec"]
    where = f"{source}, user {entry.name!r}: exec"
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), str) or not spec["command"]:
        raise ControllerError(f"{where}: no command")
    version = spec.get("apiVersion")
    if version not in EXEC_VERSIONS:
        raise ControllerError(f"{where}: apiVersion {version!r} is not one of {', '.join(EXEC_VERSIONS)}")
    if spec.get("interactiveMode") == "Always":
        raise ControllerError(
            f"{where}: interactiveMode Always needs a terminal, which ebpftop does not give it"
        )
    _check_owner(entry.file, where)
    command = spec["command"]
    if os.sep in command and not os.path.isabs(command):
        command = entry.rel(command) or command  # as kubectl: relative to the kubeconfig's folder
    env = spec.get("env") or []
    if not isinstance(env, list) or not all(isinstance(e, dict) and "name" in e for e in env):
        raise ControllerError(f"{where}: env must be a list of name/value pairs")
    info = None
    if spec.get("provideClusterInfo"):
        info = {name: cluster[key] for key, name in CLUSTER_INFO.items() if cluster.get(key) is not None}
    return ExecPlugin(
        command=command,
        args=tuple(str(a) for a in spec.get("args") or ()),
        env=tuple((str(e["name"]), str(e.get("value", ""))) for e in env),
        api_version=version,
        source=f"{source}, user {entry.name!r}",
        install_hint=str(spec.get("installHint") or ""),
        cluster=info,
    )


def _check_owner(path: str, where: str) -> None:
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ControllerError(f"{where}: {path}: {exc.strerror or exc}") from None
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise ControllerError(
            f"{where}: not run as root from {path}, which "
            + ("another user owns" if st.st_uid != 0 else "others may write")
            + "; copy it to a root-owned file (mode 600) and point [rollout] argo_kubeconfig at it"
        )


def _optional_str(section: dict[str, Any], key: str, source: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ControllerError(f"{source}: {key} must be a string")
    return value


def _proxy(cluster: dict[str, Any], source: str) -> str | None:
    url = _optional_str(cluster, "proxy-url", source)
    if url is None:
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in PROXY_SCHEMES:
        raise ControllerError(f"{source}: proxy-url {url!r} must be {', '.join(PROXY_SCHEMES)}://HOST:PORT")
    return url


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
