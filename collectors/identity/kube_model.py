"""A pod as the Kubernetes API names it: what `kube_pods.PodCache.lookup` returns.

Every string here comes from the API server, i.e. from whoever may create pods: it is
untrusted and reaches the screen only through tui/text.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# The labels kept of a pod's (the recommended name label, and the older `app` convention).
KEPT_LABELS = ("app.kubernetes.io/name", "app")


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    uid: str  # metadata.uid, with dashes: what cgroup.py reads from the pod's cgroup path
    node: str | None = None
    workload_kind: str | None = None  # the controller owning the pod; a Deployment through its ReplicaSet
    workload_name: str | None = None
    # Pairs, not dicts: the dataclass stays hashable and records as JSON lists.
    labels: tuple[tuple[str, str], ...] = ()  # the KEPT_LABELS it has
    containers: tuple[tuple[str, str], ...] = ()  # (container id without runtime://, container name)

    def container_name(self, container_id: str) -> str | None:
        """The name of a container of this pod by its id (the 64 hex digits of its cgroup)."""
        for cid, name in self.containers:
            if cid == container_id:
                return name
        return None

    def label(self, key: str) -> str | None:
        return next((v for k, v in self.labels if k == key), None)

    def workload(self) -> str | None:
        """ "Kind/name", as kubectl names an object; None for a bare pod."""
        if self.workload_kind and self.workload_name:
            return f"{self.workload_kind}/{self.workload_name}"
        return None
