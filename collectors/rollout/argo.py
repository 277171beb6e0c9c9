"""Argo Rollouts as the controller, through the Kubernetes API: read the Rollout, check
permission, and roll back as `kubectl argo rollouts abort` does.

The requests, the conflict handling (the abort carries the resourceVersion the
operator saw) and the errors: collectors/rollout/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from .base import Conflict, Controller, ControllerError, changes_between
from .kube import KubeAccess
from .model import Plan, Request, RolloutState

GROUP_PATH = "/apis/argoproj.io/v1alpha1"
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MERGE_PATCH = "application/merge-patch+json"
PERMISSION_TTL = 60.0

Sleep = Callable[[float], Awaitable[None]]


class ArgoController(Controller):
    kind = "argo"

    def __init__(
        self,
        service: str,
        access: KubeAccess,
        *,
        namespace: str,
        name: str,
        timeout: float = 5.0,
        retries: int = 3,
        max_wait: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(service)
        self.access = access
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._client = access.client(timeout, transport)
        self._last: RolloutState | None = None
        self._permission: tuple[float, bool, str] | None = None
        self._seen: dict[str, RolloutState] = {}

    @property
    def path(self) -> str:
        return f"{GROUP_PATH}/namespaces/{self.namespace}/rollouts/{self.name}"

    @property
    def endpoint(self) -> str:
        tls = " (TLS verification OFF: insecure-skip-tls-verify)" if self.access.insecure else ""
        return f"{self.access.server}, rollout {self.namespace}/{self.name}{tls}"

    # -- HTTP ------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json", what: str
    ) -> httpx.Response:
        """One call, 429s waited out; any other status is returned to the caller."""
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = (
            {"Content-Type": content_type, "Accept": "application/json"}
            if content
            else {"Accept": "application/json"}
        )
        for attempt in range(self.retries + 1):
            try:
                # one deadline per call: httpx's timeouts are per read, and a server
                # trickling its answer would never trip them
                async with asyncio.timeout(self.timeout):
                    resp = await self._client.request(method, path, content=content, headers=headers)
            except (httpx.TimeoutException, TimeoutError):
                maybe = "; it may or may not have been applied: check the rollout" if method != "GET" else ""
                raise ControllerError(
                    f"{what}: no answer from {self.access.server} within {self.timeout:g}s{maybe}"
                ) from None
            except httpx.HTTPError as exc:
                raise ControllerError(f"{what}: {self.access.server}: {type(exc).__name__}: {exc}") from None
            if resp.status_code != 429:
                return resp
            wait = retry_after(resp.headers.get("Retry-After"))
            if wait > self.max_wait:
                raise ControllerError(
                    f"{what}: the API server is throttling (HTTP 429) and asks to wait "
                    f"{wait:g}s, more than {self.max_wait:g}s; try again later"
                )
            if attempt == self.retries:
                break
            await self._sleep(wait)
        raise ControllerError(f"{what}: still throttled (HTTP 429) after {self.retries} retries")

    def _fail(self, resp: httpx.Response, what: str) -> ControllerError:
        reason = status_message(resp)
        code = resp.status_code
        if code == 401:
            return ControllerError(
                f"{what}: unauthorized (HTTP 401): the API server rejected the credentials "
                f"from {self.access.source} (expired token?){reason}"
            )
        if code == 403:
            return ControllerError(f"{what}: forbidden (HTTP 403){reason}")
        if code == 404:
            return ControllerError(
                f"{what}: rollout {self.namespace}/{self.name} not found at {self.access.server} "
                f"(HTTP 404){reason}"
            )
        if code == 422:
            return ControllerError(f"{what}: rejected as invalid (HTTP 422){reason}")
        return ControllerError(f"{what}: HTTP {code}{reason}")

    # -- state -------------------------------------------------------------------------

    async def _get(self) -> tuple[dict[str, Any], RolloutState]:
        what = f"read rollout {self.namespace}/{self.name}"
        resp = await self._request("GET", self.path, what=what)
        if resp.status_code != 200:
            raise self._fail(resp, what)
        try:
            doc = resp.json()
        except ValueError:
            raise ControllerError(f"{what}: the answer is not JSON") from None
        if not isinstance(doc, dict) or doc.get("kind", "Rollout") != "Rollout":
            raise ControllerError(f"{what}: the answer is not a Rollout")
        return doc, self._parse(doc)

    async def state(self) -> RolloutState:
        _, state = await self._get()
        try:
            allowed, reason = await self.permission()
        except ControllerError as exc:  # the Rollout is still worth showing; acting is not
            allowed, reason = False, f"cannot check permission: {exc}"
        state = _with(state, can_rollback=allowed, rollback_reason=reason)
        self._remember(state)
        return state

    def _remember(self, state: RolloutState) -> None:
        # By version: the collector keeps reading while the operator reads the
        # confirmation, and "what changed" must be against what the operator saw.
        self._last = state
        self._seen[state.version] = state
        while len(self._seen) > 16:
            self._seen.pop(next(iter(self._seen)))

    async def permission(self, *, fresh: bool = False) -> tuple[bool, str]:
        """May we patch rollouts/status here? Cached for a minute (asked at every read otherwise)."""
        now = self._clock()
        if not fresh and self._permission and now - self._permission[0] < PERMISSION_TTL:
            return self._permission[1], self._permission[2]
        what = "check permission (SelfSubjectAccessReview)"
        resp = await self._request("POST", SSAR_PATH, body=self._ssar(), what=what)
        if resp.status_code not in (200, 201):
            raise self._fail(resp, what)
        try:
            status = resp.json().get("status") or {}
        except (ValueError, AttributeError):
            raise ControllerError(f"{what}: the answer is not a SelfSubjectAccessReview") from None
        allowed = status.get("allowed") is True
        reason = (
            ""
            if allowed
            else (
                f"not allowed to patch rollouts/status in namespace {self.namespace} ({self.access.source})"
                + (f": {status.get('reason')}" if status.get("reason") else "")
                + (f"; {status.get('evaluationError')}" if status.get("evaluationError") else "")
            )
        )
        self._permission = (now, allowed, reason)
        return allowed, reason

    def _ssar(self) -> dict[str, Any]:
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": self.namespace,
                    "verb": "patch",
                    "group": "argoproj.io",
                    "resource": "rollouts",
                    "subresource": "status",
                    "name": self.name,
                }
            },
        }

    def _parse(self, doc: dict[str, Any]) -> RolloutState:
        meta, spec, status = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
        steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps")
        steps = steps if isinstance(steps, list) else None
        index = status.get("currentStepIndex")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        stable_rs, current = status.get("stableRS"), status.get("currentPodHash")
        canary_w = _traffic_weight(status, steps, index, stable_rs == current)
        phase = str(status.get("phase") or "")
        if status.get("abort"):
            phase = f"{phase} (aborted)" if phase and "abort" not in phase.lower() else (phase or "Aborted")
        return RolloutState(
            service=self.service,
            controller=self.kind,
            endpoint=self.endpoint,
            stable_revision=stable_rs,
            canary_revision=current if current != stable_rs else None,
            stable_weight=None if canary_w is None else 100.0 - canary_w,
            canary_weight=canary_w,
            phase=phase,
            step=index,
            steps=len(steps) if steps is not None else None,
            last_change=_last_update(status),
            message=str(status.get("message") or ""),
            version=str(meta.get("resourceVersion") or ""),
            can_promote=False,
            promote_reason="Argo: promote with `kubectl argo rollouts promote` (not offered here)",
        )

    # -- rollback ------------------------------------------------------------------------

    def _patch_body(self, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": {"abort": True}}
        if version:
            body = {"metadata": {"resourceVersion": version}, **body}
        return body

    def plan_rollback(self, state: RolloutState | None = None) -> Plan:
        state = state or self._last
        version = state.version if state else ""
        auth = self.access.auth_header_shown()
        hdrs = ((auth,) if auth else ()) + (("Content-Type", MERGE_PATCH),)
        base = self.access.server
        return Plan(
            action="rollback",
            controller=self.kind,
            endpoint=self.endpoint,
            summary=f"abort rollout {self.namespace}/{self.name}: all traffic back to the stable ReplicaSet "
            f"{(state.stable_revision if state else None) or '?'}",
            requests=(
                Request(
                    "POST",
                    base + SSAR_PATH,
                    json.dumps(self._ssar(), separators=(",", ":")),
                    (auth,) if auth else (),
                ),
                Request(
                    "PATCH",
                    base + self.path + "/status",
                    json.dumps(self._patch_body(version), separators=(",", ":")),
                    hdrs,
                ),
            ),
            note=(
                f"on 404 the same patch goes to {base + self.path}; "
                "on 409 (the rollout changed since it was read) it is re-read and nothing is applied until "
                "confirmed again, unless nothing shown changed"
            ),
        )

    async def rollback(self, plan: Plan) -> str:
        allowed, reason = await self.permission(fresh=True)
        if not allowed:
            raise ControllerError(f"abort not sent: {reason}")
        patch = json.loads(plan.requests[-1].body)
        before = self._seen.get((patch.get("metadata") or {}).get("resourceVersion", ""), self._last)
        for _ in range(2):
            resp = await self._patch(patch)
            if resp.status_code != 409:
                break
            _, now = await self._get()
            changes = changes_between(before, now) if before else ["(no earlier state to compare)"]
            seen = _with(now, can_rollback=allowed, rollback_reason=reason)
            self._remember(seen)
            if before is not None and all(c.startswith("resource version") for c in changes):
                patch = self._patch_body(now.version)  # only the controller's bookkeeping moved
                before = now
                continue
            raise Conflict(
                f"rollout {self.namespace}/{self.name} changed since it was read (HTTP 409); "
                f"nothing was applied: " + "; ".join(changes),
                seen,
                changes,
            )
        if resp.status_code == 409:
            raise ControllerError(
                f"abort rollout {self.namespace}/{self.name}: conflict (HTTP 409) twice; try again"
            )
        if resp.status_code not in (200, 201):
            raise self._fail(resp, f"abort rollout {self.namespace}/{self.name}")
        try:
            after = self._parse(resp.json())
        except (ValueError, AttributeError):
            return f"aborted rollout {self.namespace}/{self.name}"
        self._remember(_with(after, can_rollback=allowed, rollback_reason=reason))
        return (
            f"aborted rollout {self.namespace}/{self.name}: phase {after.phase or '?'}, "
            f"stable {after.stable_revision or '?'}"
        )

    async def _patch(self, body: dict[str, Any]) -> httpx.Response:
        what = f"abort rollout {self.namespace}/{self.name}"
        resp = await self._request(
            "PATCH", self.path + "/status", body=body, content_type=MERGE_PATCH, what=what
        )
        if resp.status_code == 404:
            # No status subresource on this cluster's CRD: patch the resource itself.
            resp = await self._request("PATCH", self.path, body=body, content_type=MERGE_PATCH, what=what)
        return resp

    async def close(self) -> None:
        await self._client.aclose()


def _with(state: RolloutState, **changes: Any) -> RolloutState:
    from dataclasses import replace

    return replace(state, **changes)


def retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def status_message(resp: httpx.Response) -> str:
    """': <message> (<causes>)' from a Kubernetes Status answer, or a text excerpt."""
    try:
        doc = resp.json()
    except ValueError:
        text = resp.content[:200].decode(errors="replace").strip()
        return f": {text}" if text else ""
    if not isinstance(doc, dict):
        return ""
    msg = str(doc.get("message") or "")
    causes = ((doc.get("details") or {}).get("causes") or []) if isinstance(doc.get("details"), dict) else []
    detail = "; ".join(
        f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes if isinstance(c, dict)
    )
    return (f": {msg}" if msg else "") + (f" ({detail})" if detail else "")


def _traffic_weight(
    status: dict[str, Any], steps: list[Any] | None, index: int | None, settled: bool
) -> float | None:
    """Canary percent: what the traffic router reports, else the last setWeight step reached."""
    if status.get("abort"):
        return 0.0
    weights = (status.get("canary") or {}).get("weights") if isinstance(status.get("canary"), dict) else None
    if isinstance(weights, dict):
        w = (weights.get("canary") or {}).get("weight")
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            return float(w)
    if settled:
        return 0.0
    if steps is None or index is None:
        return None
    reached = [
        s["setWeight"]
        for s in steps[: index + 1]
        if isinstance(s, dict) and isinstance(s.get("setWeight"), (int, float))
    ]
    if index >= len(steps):
        return 100.0
    return float(reached[-1]) if reached else 0.0


def _last_update(status: dict[str, Any]) -> float | None:
    times = []
    for cond in status.get("conditions") or []:
        stamp = (
            cond.get("lastUpdateTime") or cond.get("lastTransitionTime") if isinstance(cond, dict) else None
        )
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                times.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return max(times) if times else None
