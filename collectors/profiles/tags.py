"""Tags of a process, read from /proc: service, version and environment from its
OpenTelemetry variables, comm, and the container id from its cgroup.

A process we may not read (another user's, as non-root) or one that is gone gets a
visible tag value saying so, never an exception: the sample still counts.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable

from .model import EXITED, KERNEL, UNREADABLE, Tags, make_tags

# OTel resource attribute -> ebpftop tag key. deployment.environment.name is the newer
# semantic-convention spelling; either is accepted. The canary/stable track has no
# attribute of its own: on Kubernetes it is a pod label (`track: canary` in the
# canary-deployment pattern), which reaches the resource as k8s.pod.label.track.
RESOURCE_KEYS = {
    "service.name": "service",
    "service.version": "version",
    "deployment.environment": "env",
    "deployment.environment.name": "env",
    "k8s.pod.label.track": "track",
}
MAX_ENVIRON = 1 << 20  # a larger environment is read only this far
MAX_VALUE = 256  # characters kept of any one tag value

# Docker, containerd, CRI-O and podman all name a container by 64 hex digits somewhere
# in its cgroup path (docker-<id>.scope, cri-containerd-<id>.scope, /docker/<id>...).
_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def parse_resource_attributes(text: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value, values percent-encoded.

    Entries without '=' or with an empty key are skipped, as the SDKs do.
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        out[key] = urllib.parse.unquote(value.strip())
    return out


def otel_tags(environ: dict[str, str]) -> dict[str, str]:
    """service/version/env from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.

    OTEL_SERVICE_NAME wins over service.name in the attributes, as the spec says.
    """
    out: dict[str, str] = {}
    attrs = parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    for attr, key in RESOURCE_KEYS.items():
        if attrs.get(attr):
            out[key] = attrs[attr]
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        out["service"] = name
    return {k: v[:MAX_VALUE] for k, v in out.items()}


def parse_environ(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def container_id(cgroup_text: str) -> str | None:
    """The container id in /proc/PID/cgroup, or None for a process outside containers."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        m = _CONTAINER_ID.search(path)
        if m:
            return m.group(1)
    return None


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


def process_tags(pid: int, comm: str | None = None, *, proc: str = "/proc") -> Tags:
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
        cid = container_id(_read(f"{proc}/{pid}/cgroup", 64 * 1024).decode("utf-8", "replace"))
    except OSError:
        cid = None
    if cid:
        tags["container"] = cid[:12]  # the short id `docker ps` shows
    return make_tags(tags)


class TagCache:
    """process_tags per (pid, comm), refreshed after `ttl` seconds, so a busy node
    costs a few /proc reads per second, not one per sample. A new comm for a pid (exec,
    or the pid reused) is a new entry."""

    def __init__(
        self, ttl: float = 30.0, *, clock: Callable[[], float] = time.monotonic, proc: str = "/proc"
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._proc = proc
        self._cache: dict[tuple[int, str | None], tuple[float, Tags]] = {}

    def get(self, pid: int, comm: str | None = None, *, early: float = 0.0) -> Tags:
        """The tags, read again when they expire within `early` seconds: refreshing the
        ones about to expire along with one that has keeps the refreshes together."""
        now = self._clock()
        hit = self._cache.get((pid, comm))
        if hit is not None and hit[0] > now + early:
            return hit[1]
        tags = process_tags(pid, comm, proc=self._proc)
        self._cache[(pid, comm)] = (now + self.ttl, tags)
        return tags

    def cached(self, pid: int, comm: str | None, now: float) -> Tags | None:
        """The tags while fresh at `now` (this cache's clock), else None; reads nothing."""
        hit = self._cache.get((pid, comm))
        return hit[1] if hit is not None and hit[0] > now else None

    def now(self) -> float:
        return self._clock()

    def prune(self) -> int:
        """Drop expired entries; returns how many."""
        now = self._clock()
        old = [k for k, (exp, _) in self._cache.items() if exp <= now]
        for key in old:
            del self._cache[key]
        return len(old)
