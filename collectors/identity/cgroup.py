"""What a process's cgroup path says about it: systemd unit, container, Kubernetes pod.

Read from /proc/PID/cgroup. On cgroup v2 that is one line `0::/path`; on a hybrid or v1
host the v2 line is `/` and the hierarchy that holds the path is a v1 one (name=systemd,
memory, cpu ...), so the first non-root path of those is used.

Path shapes (the runtimes' and the kubelet's, systemd and cgroupfs drivers):

- systemd: `/system.slice/nginx.service`, `/user.slice/user-1000.slice/session-3.scope`
- Docker: `/system.slice/docker-<id>.scope`, `/docker/<id>`
- containerd: `.../cri-containerd-<id>.scope`, `/kubepods/.../<id>` (cgroupfs)
- CRI-O: `.../crio-<id>.scope` (`crio-conmon-<id>.scope` is its monitor)
- Podman: `/machine.slice/libpod-<id>.scope[/container]`, `libpod-conmon-<id>.scope`
- Kubernetes: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid
  with _ for ->.slice/<container>` (systemd driver), `/kubepods/besteffort/pod<uid>/<id>`
  (cgroupfs); a Guaranteed pod sits directly under kubepods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PATH = 4096

# Scopes whose unit names a container, not a service an operator runs.
_RUNTIME_SCOPES = (
    ("cri-containerd-", "containerd"),
    ("crio-conmon-", "cri-o"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-conmon-", "podman"),
    ("libpod-", "podman"),
)
_ID = re.compile(r"^[0-9a-f]{64}$")
_POD = re.compile(r"^(?:kubepods(?:-(?:burstable|besteffort))?-)?pod([0-9a-f_-]{36})(?:\.slice)?$")
_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer")


@dataclass(frozen=True)
class CgroupInfo:
    path: str
    unit: str | None = None  # systemd unit (service or scope) that is not a container's
    container_id: str | None = None  # 64 hex digits
    runtime: str | None = None  # containerd | cri-o | docker | podman | None (unknown)
    pod_uid: str | None = None  # as metadata.uid: dashes
    qos: str | None = None  # guaranteed | burstable | besteffort (Kubernetes QoS class)


def cgroup_path(text: str) -> str:
    """The path that places the process: the v2 one, else the first non-root v1 one."""
    v1 = ""
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        _controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hid == "0" and path not in ("", "/"):
            return path[:MAX_PATH]
        if not v1 and path not in ("", "/") and hid != "0":
            v1 = path
    return v1[:MAX_PATH] or "/"


def parse_cgroup(text: str) -> CgroupInfo:
    path = cgroup_path(text)
    parts = [p for p in path.split("/") if p]
    unit = container = runtime = pod = qos = None
    under_kubepods = False
    for i, part in enumerate(parts):
        if part in ("kubepods", "kubepods.slice"):
            under_kubepods = True
            qos = "guaranteed"  # until a burstable/besteffort level says otherwise
            continue
        for level in ("burstable", "besteffort"):
            if under_kubepods and part in (level, f"kubepods-{level}.slice"):
                qos = level
        m = _POD.match(part)
        if under_kubepods and m:
            pod = m.group(1).replace("_", "-")
            continue
        name = part.removesuffix(".scope")
        for prefix, rt in _RUNTIME_SCOPES:
            if part.endswith(".scope") and name.startswith(prefix) and _ID.match(name[len(prefix) :]):
                container, runtime = name[len(prefix) :], rt
                break
        else:
            if _ID.match(part):
                container = part
                prev = parts[i - 1] if i else ""
                runtime = "docker" if prev == "docker" else ("podman" if prev == "libpod" else runtime)
            elif part.endswith(_UNIT_SUFFIXES) and not under_kubepods:
                unit = part
    if container is not None and runtime is None and pod is not None:
        runtime = None  # cgroupfs driver: the path does not say which runtime
    return CgroupInfo(path, unit, container, runtime, pod, qos if pod is not None else None)
