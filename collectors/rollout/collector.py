"""The rollout source: every interval, read the configured controller's state and
publish it (source "rollout"), so the canary pane shows revisions, weights and phase
beside the verdict, and whether rollback is possible (or why not).

`controller_from(settings)` is the one place a controller is built from settings; the
CLI verb, the collector and the TUI's rollback all use it.
"""

from __future__ import annotations

from typing import Any

from ebpftop.core.collector import Collector, SourceUnavailable

from .base import Controller, ControllerError
from .model import RolloutData

HINT = "set [rollout] controller (haproxy, argo or webhook) and its address; `ebpftop --help-config`"


def controller_from(settings: Any, **overrides: Any) -> Controller | None:
    """The controller these settings describe; None when none is configured.

    Raises ControllerError naming the missing or bad setting. `overrides` reach the
    controller's constructor (tests inject transports and sleeps).
    """
    kind = settings.rollout_controller
    service = settings.rollout_service
    if kind is None:
        return None
    if kind == "haproxy":
        from .haproxy import HAProxyController
        from .memory import RollbackMemory

        if not settings.rollout_haproxy_socket:
            raise ControllerError("[rollout] controller is haproxy but haproxy_socket is not set")
        overrides.setdefault("memory", RollbackMemory.from_settings(settings))
        return HAProxyController(
            service,
            settings.rollout_haproxy_socket,
            backend=settings.rollout_haproxy_backend,
            canary=settings.rollout_haproxy_canary,
            stable=settings.rollout_haproxy_stable,
            mode=settings.rollout_haproxy_mode,
            timeout=settings.rollout_timeout,
            **overrides,
        )
    if kind == "webhook":
        from .webhook import WebhookController

        if not settings.rollout_webhook_url:
            raise ControllerError("[rollout] controller is webhook but webhook_url is not set")
        return WebhookController(
            service,
            settings.rollout_webhook_url,
            secret_file=settings.rollout_webhook_secret_file,
            timeout=settings.rollout_timeout,
            **overrides,
        )
    if kind == "argo":
        from .argo import ArgoController
        from .kube import load_access

        access = load_access(settings.rollout_argo_kubeconfig, settings.rollout_argo_context)
        return ArgoController(
            service,
            access,
            namespace=settings.rollout_argo_namespace or access.namespace or "default",
            name=settings.rollout_argo_rollout or service,
            timeout=settings.rollout_timeout,
            **overrides,
        )
    raise ControllerError(f"[rollout] controller {kind!r}: use haproxy, argo or webhook")


class RolloutCollector(Collector):
    name = "rollout"
    urgent = True  # its first sample names a backend down (core/runtime.py starts it first)

    def __init__(self, settings: Any, controller: Controller | None = None) -> None:
        self.settings = settings
        self.interval = settings.rollout_interval
        self.controller = controller

    async def start(self) -> None:
        if self.controller is not None:
            return
        try:
            self.controller = controller_from(self.settings)
        except ControllerError as exc:
            raise SourceUnavailable(str(exc), HINT) from None
        if self.controller is None:
            raise SourceUnavailable("no rollout controller configured", HINT, off=True)

    async def collect(self) -> RolloutData:
        if self.controller is None:
            await self.start()
        assert self.controller is not None
        state = await self.controller.state()  # ControllerError: the runner degrades the source
        return RolloutData(services=(state,))

    async def close(self) -> None:
        if self.controller is not None:
            await self.controller.close()

    def degraded_reason(self, payload: Any) -> str:
        if isinstance(payload, RolloutData):
            blocked = [s for s in payload.services if not s.can_rollback]
            if blocked:
                return f"rollback unavailable for {blocked[0].service}: {blocked[0].rollback_reason}"
        return ""
