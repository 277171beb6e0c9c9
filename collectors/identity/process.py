"""A process's identity read from /proc, cached per process.

A process we may not read (another user's, as non-root) or one that is gone keeps what
could be read; the rest stays None. Reads per process: comm, environ (up to 1 MiB),
cgroup, the ns/net link; at most once per `ttl` seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from .cgroup import parse_cgroup
from .kube_model import PodInfo
from .model import Identity
from .netns import NetnsLabels
from .otel import otel_tags, parse_environ
from .pidcache import PidCache

MAX_ENVIRON = 1 << 20


class PodLookup(Protocol):
    """kube_pods' cache of this node's pods, by UID; never blocks."""

    def lookup(self, uid: str) -> PodInfo | None: ...


def _read(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def read_identity(
    pid: int,
    comm: str | None = None,
    *,
    proc: str = "/proc",
    netns: NetnsLabels | None = None,
) -> Identity:
    """`comm` (from BPF) is used when /proc has none (the process is gone)."""
    with contextlib.suppress(OSError):  # gone: the kernel's comm stands
        comm = _read(f"{proc}/{pid}/comm", 64).decode("utf-8", "replace").rstrip("\n") or comm
    try:
        tags = otel_tags(parse_environ(_read(f"{proc}/{pid}/environ", MAX_ENVIRON)))
    except OSError:
        tags = {}
    try:
        cg = parse_cgroup(_read(f"{proc}/{pid}/cgroup", 64 * 1024).decode("utf-8", "replace"))
    except OSError:
        cg = None
    where = (netns or NetnsLabels(proc=proc)).of(pid, proc=proc)
    return Identity(
        pid,
        comm,
        tags.get("service"),
        tags.get("version"),
        tags.get("env"),
        tags.get("track"),
        where,
        cg.path if cg and cg.path != "/" else None,
        cg.unit if cg else None,
        cg.container_id if cg else None,
        cg.runtime if cg else None,
        cg.pod_uid if cg else None,
        cg.qos if cg else None,
    )


def with_pod(ident: Identity, pod: PodInfo | None) -> Identity:
    """`ident` with the pod's name, namespace, workload and container name."""
    if pod is None:
        return ident
    return replace(
        ident,
        pod=pod.name,
        namespace=pod.namespace,
        workload=pod.workload(),
        container_name=pod.container_name(ident.container) if ident.container else None,
    )


class IdentityCache:
    """read_identity per (pid, comm) for `ttl` seconds (pidcache.py). The pod part is
    looked up at every get (a dict read), so a pod the API reports later is named
    without waiting for the ttl."""

    def __init__(
        self,
        ttl: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        proc: str = "/proc",
        pods: PodLookup | None = None,
    ) -> None:
        self.pods = pods
        netns = NetnsLabels(ttl, clock=clock, proc=proc)
        self._cache: PidCache[Identity] = PidCache(
            lambda pid, comm: read_identity(pid, comm, proc=proc, netns=netns), ttl, clock
        )

    def get(self, pid: int, comm: str | None = None) -> Identity:
        ident = self._cache.get(pid, comm)
        if self.pods is not None and ident.pod_uid:
            return with_pod(ident, self.pods.lookup(ident.pod_uid))
        return ident

    def prune(self, now: float | None = None) -> int:
        return self._cache.prune(now)
