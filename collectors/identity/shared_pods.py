"""One pod cache (kube_pods.PodCache) for every collector that names processes.

Flows and Profiles both turn a cgroup's pod UID into a pod; one list and one watch of
the API serve both. The cache runs while at least one of them runs: started by the
first that starts, closed after the last that closes, so one collector's restart does
not stop the other's names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ebpftop.core.settings import Settings

from .kube_where import kube_configured

if TYPE_CHECKING:
    from .kube_model import PodInfo
    from .kube_pods import PodCache

log = logging.getLogger(__name__)


class SharedPods:
    def __init__(self, cache: PodCache | None, error: str | None = None) -> None:
        self.cache = cache
        self.config_error = error  # the kubeconfig could not be used: said, not fatal
        self._users: set[int] = set()
        self._starting: asyncio.Task[None] | None = None

    async def acquire(self, user: object) -> None:
        if self.cache is None or id(user) in self._users:
            return
        self._users.add(id(user))
        if len(self._users) == 1:
            # not awaited: the first list may take up to the API timeout, and a source's
            # data must not wait for names (they appear when the list is in)
            self._starting = asyncio.create_task(self.cache.start(), name="kube pods: first list")

    async def release(self, user: object) -> None:
        if self.cache is None or id(user) not in self._users:
            return
        self._users.discard(id(user))
        if not self._users:
            starting, self._starting = self._starting, None
            if starting is not None and not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            await self.cache.close()

    def lookup(self, uid: str) -> PodInfo | None:
        return self.cache.lookup(uid) if self.cache is not None else None

    @property
    def problem(self) -> str | None:
        """Why pods are not named now, for the panes' notices; None when they are."""
        if self.config_error:
            return f"Kubernetes pods not named: {self.config_error}"
        if self.cache is not None and self.cache.error:
            return f"Kubernetes pods of node {self.cache.node}: {self.cache.error}"
        return None


def shared_pods(settings: Settings) -> SharedPods | None:
    """None when no Kubernetes API is configured (the usual case off Kubernetes)."""
    if not kube_configured(settings.rollout_argo_kubeconfig):
        return None
    from ..rollout.base import ControllerError
    from .kube_pods import pod_cache_from

    try:
        cache = pod_cache_from(settings)
    except ControllerError as exc:
        log.warning("Kubernetes pods will not be named: %s", exc)
        return SharedPods(None, str(exc))
    return SharedPods(cache) if cache is not None else None
