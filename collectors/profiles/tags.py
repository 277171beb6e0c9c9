"""Tags of a process, read from /proc: service, version and environment from its
OpenTelemetry variables, comm, and the container id from its cgroup.

A process we may not read (another user's, as non-root) or one that is gone gets a
visible tag value saying so, never an exception: the sample still counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ebpftop.collectors.identity.cgroup import parse_cgroup
from ebpftop.collectors.identity.netns import NetnsLabels
from ebpftop.collectors.identity.otel import (
    MAX_VALUE,
    RESOURCE_KEYS,
    otel_tags,
    parse_environ,
    parse_resource_attributes,
)
from ebpftop.collectors.identity.pidcache import PidCache
from ebpftop.collectors.identity.process import PodLookup

from .model import EXITED, KERNEL, UNREADABLE, Tags, make_tags, tag

MAX_ENVIRON = 1 << 20  # a larger environment is read only this far

__all__ = [
    "MAX_VALUE",
    "RESOURCE_KEYS",
    "TagCache",
    "container_id",
    "otel_tags",
    "parse_environ",
    "parse_resource_attributes",
    "process_tags",
]


def container_id(cgroup_text: str) -> str | None:
    """The container id in /proc/PID/cgroup, or None for a process outside containers."""
    return parse_cgroup(cgroup_text).container_id


def _read(path: str, limit: int = MAX_ENVIRON) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


PF_KTHREAD = 0x00200000  # include/linux/sched.h


def is_kernel_thread(pid: int, *, proc: str = "/proc") -> bool:
    try:
        stat = _read(f"{proc}/{pid}/stat", 4096).decode("ascii", "replace")
        return bool(int(stat.rsplit(")", 1)[1].split()[6]) & PF_KTHREAD)  # field 9, flags
    except (OSError, ValueError, IndexError):
        return False


def process_tags(
    pid: int, comm: str | None = None, *, proc: str = "/proc", netns: NetnsLabels | None = None
) -> Tags:
    """Every tag of process `pid`. `comm` (from BPF) is used when /proc has none."""
    tags: dict[str, str] = {"pid": str(pid)}
    try:
        tags["comm"] = _read(f"{proc}/{pid}/comm", 64).decode("utf-8", "replace").rstrip("\n")
    except OSError:
        if comm:
            tags["comm"] = comm
    try:
        environ = _read(f"{proc}/{pid}/environ")
        if environ:
            tags.update(otel_tags(parse_environ(environ)))
        elif is_kernel_thread(pid, proc=proc):  # older kernels read a kernel thread's as empty
            tags["service"] = KERNEL
    except PermissionError:
        tags["service"] = UNREADABLE
    except (FileNotFoundError, ProcessLookupError):
        # newer kernels refuse a kernel thread's environ with ESRCH, as for a dead process
        tags["service"] = KERNEL if is_kernel_thread(pid, proc=proc) else EXITED
    except OSError as exc:
        tags["service"] = f"{UNREADABLE} ({exc.strerror or exc})"
    try:
        cg = parse_cgroup(_read(f"{proc}/{pid}/cgroup", 64 * 1024).decode("utf-8", "replace"))
    except OSError:
        cg = None
    if cg is not None:
        if cg.container_id:
            tags["container"] = cg.container_id[:12]  # the short id `docker ps` shows
        if cg.unit:
            tags["unit"] = cg.unit
        if cg.pod_uid:
            tags["pod_uid"] = cg.pod_uid
    where = (netns or NetnsLabels(proc=proc)).of(pid, proc=proc)
    if where is not None:
        tags["netns"] = where
    return make_tags(tags)


def with_pod_tags(tags: Tags, pods: PodLookup | None) -> Tags:
    """The pod's name, namespace and workload as tags, when its UID is known to `pods`."""
    uid = tag(tags, "pod_uid") if pods is not None else None
    pod = pods.lookup(uid) if pods is not None and uid else None
    if pod is None:
        return tags
    more = dict(tags)
    more.update(pod=pod.name, ns=pod.namespace)
    if pod.workload():
        more["workload"] = str(pod.workload())
    return make_tags(more)


class TagCache(PidCache[Tags]):
    """process_tags per (pid, comm) for `ttl` seconds (identity/pidcache.py), with the
    pod's tags joined when read."""

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
        super().__init__(
            lambda pid, comm: with_pod_tags(process_tags(pid, comm, proc=proc, netns=netns), self.pods),
            ttl,
            clock,
        )
