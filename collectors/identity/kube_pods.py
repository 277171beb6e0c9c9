"""The pods of this node by UID, from the Kubernetes API: listed once, then watched.

A collector that owns the cache starts and closes it; lookups read memory only:

    pods = pod_cache_from(settings)            # None: no Kubernetes API configured
    if pods is not None:
        await pods.start()                     # first list (bounded); never raises
    ...
    info = pods.lookup(ident.pod_uid)          # PodInfo | None, never blocks, any thread
    ...
    await pods.close()

What it asks the API server (the pods of one node, `fieldSelector=spec.nodeName=NODE`):
- a list, `GET /api/v1/pods` in pages of `PAGE` (`limit`/`continue`), which gives the
  resourceVersion the watch starts from;
- a watch from there (`watch=1`, `allowWatchBookmarks=true`, `timeoutSeconds`): ADDED and
  MODIFIED replace a pod, DELETED removes it, BOOKMARK and every event move the
  resourceVersion on; a watch that ends is resumed from the last resourceVersion;
- 410 Gone (as the watch's answer or as an ERROR event: the version is too old) starts
  over with a list, and so does a list older than `relist_every` (a bound on any drift);
- failures are kept in `error` and retried with backoff (`BACKOFF`); the cache keeps
  serving what it had.
- the workload: the owner reference marked controller. A ReplicaSet is named for its
  Deployment (`<deployment>-<pod-template-hash>`, the pod carries the hash as a label);
  when the name does not follow that, the ReplicaSet (or a Job, for its CronJob) is read
  once for its own owner and remembered until the next list, so a call is made per new
  owner, never per flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from ...core.settings import Settings
from ..rollout.base import ControllerError
from ..rollout.kube import KubeAccess, load_access
from .kube_model import KEPT_LABELS, PodInfo
from .kube_where import kube_configured

PODS = "/api/v1/pods"
OWNER_PATHS = {
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
}
RUNTIME_PREFIXES = ("containerd://", "cri-o://", "docker://")
PAGE = 500
WATCH_SECONDS = 240  # the server ends each watch after this; it is then resumed
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

Sleep = Callable[[float], Awaitable[None]]


class Gone(Exception):
    """410: the resourceVersion is older than the server keeps; list again."""


class PodCache:
    def __init__(
        self,
        access: KubeAccess,
        node: str,
        *,
        timeout: float = 10.0,
        watch_seconds: int = WATCH_SECONDS,
        relist_every: float = 600.0,
        page: int = PAGE,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self.node = node
        self.timeout = timeout
        self.watch_seconds = watch_seconds
        self.relist_every = relist_every
        self.page = page
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._pods: dict[str, PodInfo] = {}
        self._owners: dict[tuple[str, str, str], tuple[str, str] | None] = {}  # (kind, ns, name) -> its owner
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None
        self.error: str | None = None  # the last failure, None once a list or watch works again
        self.lists = 0  # complete lists (the first, and one after each 410 or relist_every)
        self.watches = 0  # watch requests made
        self.listed_at: float | None = None
        self.synced = asyncio.Event()  # set after the first complete list

    # -- what the owner calls ------------------------------------------------------------

    async def start(self) -> None:
        """The first list, waited for at most `timeout`; then the watch runs on its own."""
        if self._task is not None:
            return
        self._client = self.access.client(self.timeout, self._transport)
        self._task = asyncio.create_task(self._run(), name=f"kube pods of {self.node}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.synced.wait(), self.timeout)

    def lookup(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pods(self) -> list[PodInfo]:
        return list(self._pods.values())

    async def close(self) -> None:
        """Stop the watch and close the connection; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                stale = self.listed_at is None or self._clock() - self.listed_at >= self.relist_every
                if self.resource_version is None or stale:
                    await self._list()
                await self._watch()
                failures = 0
            except Gone:
                self.resource_version = None
            except (httpx.HTTPError, ControllerError, ValueError) as exc:
                self.error = _describe(exc, self.access)
                await self._sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1

    def _query(self, **extra: str) -> str:
        params = {"fieldSelector": f"spec.nodeName={self.node}", **extra}
        return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())

    async def _list(self) -> None:
        assert self._client is not None
        pods: dict[str, PodInfo] = {}
        cont = ""
        # Owners are read again per list: bounded to the owners of today's pods, and an owner
        # that failed to read (a transient error, RBAC granted since) gets another chance.
        self._owners.clear()
        while True:
            extra = {"limit": str(self.page)} | ({"continue": cont} if cont else {})
            resp = await self._client.get(f"{PODS}?{self._query(**extra)}")
            doc = _answer(resp, "list pods", self.access)
            for item in _list(doc.get("items")):
                info = await self._pod(_dict(item))
                if info is not None:
                    pods[info.uid] = info
            meta = _dict(doc.get("metadata"))
            cont = str(meta.get("continue") or "")
            if not cont:
                break
        self._pods = pods  # one assignment: a lookup sees the old set or the new one
        self.resource_version = str(meta.get("resourceVersion") or "") or None
        self.listed_at = self._clock()
        self.lists += 1
        self.error = None
        self.synced.set()

    async def _watch(self) -> None:
        assert self._client is not None and self.resource_version is not None
        query = self._query(
            watch="1",
            allowWatchBookmarks="true",
            resourceVersion=self.resource_version,
            timeoutSeconds=str(self.watch_seconds),
        )
        # The server holds a watch open for watch_seconds; the read timeout allows that.
        timeout = httpx.Timeout(self.timeout, read=self.watch_seconds + self.timeout)
        self.watches += 1
        async with self._client.stream("GET", f"{PODS}?{query}", timeout=timeout) as resp:
            if resp.status_code != 200:
                await resp.aread()
                _answer(resp, "watch pods", self.access)
            self.error = None
            async for line in resp.aiter_lines():
                if line.strip():
                    await self._event(json.loads(line))
                if self.listed_at is not None and self._clock() - self.listed_at >= self.relist_every:
                    return  # the loop lists again

    async def _event(self, event: object) -> None:
        kind, obj = _dict(event).get("type"), _dict(_dict(event).get("object"))
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ControllerError(f"watch pods: {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        version = _dict(obj.get("metadata")).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            info = await self._pod(obj)
            if info is not None:
                self._pods[info.uid] = info
        elif kind == "DELETED":
            self._pods.pop(str(_dict(obj.get("metadata")).get("uid")), None)
        elif kind != "BOOKMARK":
            raise ControllerError(f"watch pods: unknown event type {kind!r}")
        if version:
            self.resource_version = str(version)

    # -- one pod ------------------------------------------------------------------------

    async def _pod(self, obj: dict[str, Any]) -> PodInfo | None:
        meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
        uid, name, ns = meta.get("uid"), meta.get("name"), meta.get("namespace")
        if not (isinstance(uid, str) and isinstance(name, str) and isinstance(ns, str)):
            return None  # not a pod we can name: skipped rather than the whole list failing
        labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
        kind, owner = await self._workload(meta, ns, labels)
        containers = []
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for cs in _list(status.get(key)):
                cid = _container_id(_dict(cs).get("containerID"))
                if cid and isinstance(cs.get("name"), str):
                    containers.append((cid, cs["name"]))
        return PodInfo(
            name=name,
            namespace=ns,
            uid=uid,
            node=spec.get("nodeName") if isinstance(spec.get("nodeName"), str) else None,
            workload_kind=kind,
            workload_name=owner,
            labels=tuple((k, str(labels[k])) for k in KEPT_LABELS if k in labels),
            containers=tuple(containers),
        )

    async def _workload(
        self, meta: dict[str, Any], ns: str, labels: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        ref = _controller(meta)
        if ref is None:
            return None, None
        kind, name = ref
        if kind == "ReplicaSet":
            h = labels.get("pod-template-hash")
            if isinstance(h, str) and h and name.endswith("-" + h):
                return "Deployment", name[: -len(h) - 1]
        if kind in OWNER_PATHS:
            up = await self._owner_of(kind, ns, name)
            if up is not None:
                return up
        return kind, name

    async def _owner_of(self, kind: str, ns: str, name: str) -> tuple[str, str] | None:
        key = (kind, ns, name)
        if key not in self._owners:
            assert self._client is not None
            try:
                resp = await self._client.get(OWNER_PATHS[kind].format(ns=quote(ns), name=quote(name)))
                doc = _answer(resp, f"read {kind} {ns}/{name}", self.access)
                self._owners[key] = _controller(_dict(doc.get("metadata")))
            except (httpx.HTTPError, ControllerError, ValueError):
                self._owners[key] = None  # not allowed or gone: the pod's own owner is named instead
        return self._owners[key]


def _dict(value: object) -> dict[str, Any]:
    # A field of the wrong JSON type reads as absent: one odd object is not a failed list.
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _controller(meta: dict[str, Any]) -> tuple[str, str] | None:
    for ref in _list(meta.get("ownerReferences")):
        if isinstance(ref, dict) and ref.get("controller") and ref.get("kind") and ref.get("name"):
            return str(ref["kind"]), str(ref["name"])
    return None


def _container_id(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    for prefix in RUNTIME_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :] or None
    return None


def _answer(resp: httpx.Response, what: str, access: KubeAccess) -> dict[str, Any]:
    if resp.status_code == 410:
        raise Gone()
    if resp.status_code != 200:
        try:
            message = resp.json().get("message") or resp.reason_phrase
        except ValueError:
            message = resp.text[:200]
        hint = " (credentials rejected: expired token?)" if resp.status_code == 401 else ""
        if resp.status_code == 403:
            hint = " (the account needs get, list and watch on pods)"
        raise ControllerError(f"{what} at {access.server}: HTTP {resp.status_code}: {message}{hint}")
    doc = resp.json()
    if not isinstance(doc, dict):
        raise ControllerError(f"{what} at {access.server}: the answer is not a JSON object")
    return doc


def _describe(exc: Exception, access: KubeAccess) -> str:
    if isinstance(exc, ControllerError):
        return str(exc)
    return f"{access.server}: {type(exc).__name__}: {exc}"


def node_name(configured: str | None) -> str:
    """This node's name: as configured, else as the kubelet names it by default (the hostname,
    lower case)."""
    return configured or socket.gethostname().strip().lower()


def pod_cache_from(settings: Settings) -> PodCache | None:
    """The pod cache for the rollout `kube` settings and `kube_node_name`; None when no
    Kubernetes API is configured. A kubeconfig that is there but wrong raises ControllerError."""
    if not kube_configured(settings.rollout_argo_kubeconfig):
        return None
    access = load_access(settings.rollout_argo_kubeconfig, settings.rollout_argo_context)
    return PodCache(access, node_name(settings.kube_node_name), timeout=settings.rollout_timeout)
