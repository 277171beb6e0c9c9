"""Where a Kubernetes API would be configured, answered without importing a client.

Every dashboard asks this at start; on the many nodes with no Kubernetes at all the
answer must not cost the HTTP client's import (httpx: ~0.2 s of a cold start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def default_kubeconfig(env: Mapping[str, str] | None = None) -> str:
    """$KUBECONFIG as given (one path or several, os.pathsep-separated), else ~/.kube/config."""
    env = os.environ if env is None else env
    paths = [p for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    return os.pathsep.join(paths) if paths else os.path.expanduser("~/.kube/config")


def kube_configured(
    kubeconfig: str | None, env: Mapping[str, str] | None = None, sa_dir: Path = SA_DIR
) -> bool:
    """An API to ask: an explicit kubeconfig, a pod's service account, or a kubeconfig file."""
    env = os.environ if env is None else env
    if kubeconfig or (env.get("KUBERNETES_SERVICE_HOST") and (sa_dir / "token").exists()):
        return True
    return any(os.path.exists(p) for p in default_kubeconfig(env).split(os.pathsep))
