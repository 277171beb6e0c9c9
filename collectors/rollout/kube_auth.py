"""Credentials that change while ebpftop runs: rotated token files and exec plugins.

A service-account token is rotated by the kubelet (a new file behind the `..data`
symlink), so `TokenFile` re-reads it whenever the file it names changes (inode, size or
mtime), checked before each request: a stat, no read, while it is unchanged.

An exec plugin (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`) is run as
kubectl runs it: `KUBERNETES_EXEC_INFO` in its environment, no terminal, its
ExecCredential (client.authentication.k8s.io/v1 or v1beta1) read from stdout. The token
is kept until its `expirationTimestamp` (less a margin) and the plugin is run again
only then, or once after a 401. Only token credentials are taken: a plugin answering
with a client certificate is reported (none of the managed clusters' plugins does).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from .base import ControllerError

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXPIRY_MARGIN = 10.0  # seconds before expirationTimestamp that a token counts as expired
EXEC_TIMEOUT = 30.0  # a plugin may fetch a token over the network; not forever


class TokenFile:
    """A bearer token read from a file, read again when the file changes."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    def token(self, *, force: bool = False) -> str:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_size, st.st_mtime_ns)
            if force or seen != self._seen:
                self._token = Path(self.path).read_text().strip()
                self._seen = seen
        except OSError as exc:
            raise ControllerError(f"{self.source}: token file {self.path}: {exc.strerror or exc}") from None
        if not self._token:
            raise ControllerError(f"{self.source}: token file {self.path} is empty")
        return self._token


@dataclass
class ExecPlugin:
    """The `exec` section of a kubeconfig user, and the credential it last gave."""

    command: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    api_version: str
    source: str  # "kubeconfig FILE, context C, user U": where to look when it fails
    install_hint: str = ""
    cluster: dict[str, Any] | None = None  # given to the plugin when provideClusterInfo is set
    clock: Callable[[], float] = time.time
    runs: int = field(default=0, compare=False)  # how often the plugin ran (tests, the dry run)
    _token: str = field(default="", repr=False, compare=False)
    _expires: float | None = field(default=None, compare=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        return f"exec plugin {os.path.basename(self.command)}"

    def valid(self) -> bool:
        return bool(self._token) and (self._expires is None or self.clock() < self._expires - EXPIRY_MARGIN)

    async def token(self, *, force: bool = False) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent requests wait for one run, not one each
            if force or not self.valid():
                self._token, self._expires = await self._run()
                self.runs += 1
            return self._token

    async def _run(self) -> tuple[str, float | None]:
        where = f"{self.source}: {self.describe()}"
        info: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            info["cluster"] = self.cluster
        env = dict(os.environ)
        env.update(self.env)
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": info}
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command,
                *self.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            hint = f" ({self.install_hint.strip()})" if self.install_hint.strip() else ""
            raise ControllerError(
                f"{where}: cannot run {self.command}: {exc.strerror or exc}{hint}"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ControllerError(f"{where}: no answer within {EXEC_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise ControllerError(f"{where}: exited with {proc.returncode}: {tail[0][:300]}")
        return self._parse(out, where)

    def _parse(self, out: bytes, where: str) -> tuple[str, float | None]:
        try:
            doc = json.loads(out)
        except ValueError:
            raise ControllerError(f"{where}: its output is not JSON") from None
        if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
            raise ControllerError(f"{where}: its output is not an ExecCredential")
        if doc.get("apiVersion") != self.api_version:
            raise ControllerError(
                f"{where}: answered apiVersion {doc.get('apiVersion')!r}, "
                f"the kubeconfig asks {self.api_version}"
            )
        status = doc.get("status")
        if not isinstance(status, dict):
            raise ControllerError(f"{where}: its ExecCredential has no status")
        token = status.get("token")
        if not isinstance(token, str) or not token:
            got = "a client certificate" if status.get("clientCertificateData") else "no token"
            raise ControllerError(f"{where}: gave {got}; ebpftop takes token credentials from exec plugins")
        stamp = status.get("expirationTimestamp")
        if stamp is None:
            return token, None  # valid until the server says 401
        try:
            expires = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ControllerError(f"{where}: expirationTimestamp {stamp!r} is not RFC 3339") from None
        return token, expires


class KubeAuth(httpx.Auth):
    """Bearer auth whose token comes from a rotating file or an exec plugin.

    On a 401 the credential is fetched once more (a token revoked or rotated early) and
    the request sent again; a second 401 is the answer.
    """

    def __init__(self, credential: TokenFile | ExecPlugin) -> None:
        self.credential = credential

    async def _token(self, force: bool) -> str:
        if isinstance(self.credential, TokenFile):
            return await asyncio.to_thread(self.credential.token, force=force)
        return await self.credential.token(force=force)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token(False)}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            request.headers["Authorization"] = f"Bearer {await self._token(True)}"
            yield request


class NamedContext(ssl.SSLContext):
    """An SSL context that checks the server's certificate for `server_name`, whatever
    address the connection goes to (kubeconfig `tls-server-name`). Set in the context
    rather than per request so it holds through a proxy's CONNECT tunnel too."""

    server_name: str = ""

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: Any = None,
        session: Any = None,
    ) -> Any:
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.server_name, session
        )

    def wrap_bio(
        self,
        incoming: Any,
        outgoing: Any,
        server_side: bool = False,
        server_hostname: Any = None,
        session: Any = None,
    ) -> Any:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def tls_context(cafile: str | None, cadata: str | None, server_name: str | None) -> ssl.SSLContext:
    """As ssl.create_default_context, checking the certificate for server_name when given."""
    if not server_name:
        return ssl.create_default_context(cafile=cafile, cadata=cadata)
    ctx = NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = server_name
    if cafile or cadata:
        ctx.load_verify_locations(cafile=cafile, cadata=cadata)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx
