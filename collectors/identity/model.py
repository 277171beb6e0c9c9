"""Identity: who a socket or a CPU sample belongs to, as far as this node can tell."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Identity:
    pid: int
    comm: str | None = None
    # OpenTelemetry resource (otel.py): the first choice for "service"
    service: str | None = None
    version: str | None = None
    env: str | None = None
    track: str | None = None
    # network namespace: None when it is ebpftop's own (the host's)
    netns: str | None = None
    # cgroup (cgroup.py)
    cgroup: str | None = None
    unit: str | None = None
    container: str | None = None  # 64 hex digits
    runtime: str | None = None
    pod_uid: str | None = None
    qos: str | None = None
    # from the Kubernetes API, when one is configured (kube_pods.py)
    pod: str | None = None
    namespace: str | None = None
    workload: str | None = None  # Kind/name of the owner (a Deployment through its ReplicaSet)
    container_name: str | None = None

    def where(self) -> str | None:
        """The shortest name of what the process runs in: pod, container, unit or netns."""
        if self.pod:
            return f"{self.namespace}/{self.pod}" if self.namespace else self.pod
        if self.pod_uid:
            return f"pod {self.pod_uid[:8]}"
        if self.container:
            return f"{self.runtime or 'container'} {self.container[:12]}"
        if self.unit:
            return self.unit
        return self.netns

    def pairs(self) -> list[tuple[str, str]]:
        """Every known field but pid, as (name, value), in declaration order."""
        return [
            (f.name, str(v))
            for f in fields(self)
            if f.name != "pid" and (v := getattr(self, f.name)) is not None
        ]


# Filter and group keys the panes accept, each the Identity field it reads.
KEYS = {
    "pod": "pod",
    "ns": "namespace",
    "namespace": "namespace",
    "workload": "workload",
    "unit": "unit",
    "container": "container",
    "netns": "netns",
    "service": "service",
    "track": "track",
}
