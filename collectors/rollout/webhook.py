"""A generic webhook as the rollout controller: the escape hatch for anything else.

GET reads the state, POST sends the action, signed with HMAC-SHA256 in
`X-Ebpftop-Signature` as GitHub's webhooks are. The protocol: collectors/rollout/README.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
from pathlib import Path

import httpx

from .base import Controller, ControllerError
from .model import Plan, Request, RolloutState

SIGNATURE_HEADER = "X-Ebpftop-Signature"
MAX_BODY = 1 << 20


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def read_secret(path: str) -> bytes:
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ControllerError(f"webhook secret file {path}: {exc.strerror or exc}") from None
    if not key:
        raise ControllerError(f"webhook secret file {path} is empty")
    return key


class WebhookController(Controller):
    kind = "webhook"

    def __init__(
        self,
        service: str,
        url: str,
        *,
        secret_file: str | None,
        timeout: float = 5.0,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(service)
        self.url = url
        self.secret_file = secret_file
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=verify, transport=transport, trust_env=False, follow_redirects=False
        )
        self._last: RolloutState | None = None

    @property
    def endpoint(self) -> str:
        return _public(self.url)

    async def _call(
        self, method: str, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            # one deadline for the whole exchange: httpx's timeouts are per read, and a
            # receiver trickling its answer would never trip them
            async with asyncio.timeout(self.timeout):
                resp = await self._client.request(method, self.url, content=content, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            raise ControllerError(
                f"webhook {method} {self.endpoint}: no answer within {self.timeout:g}s"
                + ("; the receiver may still act on it" if method == "POST" else "")
            ) from None
        except httpx.HTTPError as exc:
            raise ControllerError(f"webhook {method} {self.endpoint}: {type(exc).__name__}: {exc}") from None
        if not 200 <= resp.status_code < 300:
            raise ControllerError(
                f"webhook {method} {self.endpoint} answered HTTP {resp.status_code}{_excerpt(resp)}"
            )
        return resp

    async def state(self) -> RolloutState:
        resp = await self._call("GET")
        try:
            doc = json.loads(resp.content[:MAX_BODY])
        except ValueError:
            raise ControllerError(
                f"webhook GET {self.endpoint}: the answer is not JSON{_excerpt(resp)}"
            ) from None
        if not isinstance(doc, dict):
            raise ControllerError(
                f"webhook GET {self.endpoint}: expected a JSON object, got {type(doc).__name__}"
            )
        state = RolloutState(
            service=self.service,
            controller=self.kind,
            endpoint=self.endpoint,
            stable_revision=_text(doc.get("stable_revision")),
            canary_revision=_text(doc.get("canary_revision")),
            stable_weight=_number(doc.get("stable_weight")),
            canary_weight=_number(doc.get("canary_weight")),
            phase=_text(doc.get("phase")) or "",
            step=_int(doc.get("step")),
            steps=_int(doc.get("steps")),
            last_change=_number(doc.get("last_change")),
            message=_text(doc.get("message")) or "",
            can_rollback=bool(self.secret_file),
            rollback_reason=""
            if self.secret_file
            else "no [rollout] webhook_secret_file to sign the request with",
            can_promote=bool(self.secret_file) and doc.get("promote") is True,
            promote_reason="" if doc.get("promote") is True else "the webhook does not offer promote",
        )
        self._last = state
        return state

    def _plan(self, action: str) -> Plan:
        body = json.dumps(
            {
                "action": action,
                "service": self.service,
                "time": round(time.time(), 3),
                "nonce": secrets.token_hex(8),
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        secret = self.secret_file or "(no secret file configured)"
        return Plan(
            action=action,
            controller=self.kind,
            endpoint=self.endpoint,
            summary=f"POST a signed {action} request for {self.service}",
            requests=(
                Request(
                    "POST",
                    self.endpoint,
                    body,
                    (
                        ("Content-Type", "application/json"),
                        (SIGNATURE_HEADER, f"sha256=<HMAC-SHA256 of this body under the key in {secret}>"),
                    ),
                ),
            ),
        )

    def plan_rollback(self, state: RolloutState | None = None) -> Plan:
        return self._plan("rollback")

    def plan_promote(self, state: RolloutState | None = None) -> Plan:
        return self._plan("promote")

    async def _send(self, plan: Plan) -> str:
        if not self.secret_file:
            raise ControllerError(
                "webhook: no [rollout] webhook_secret_file configured; refusing to send unsigned"
            )
        key = read_secret(self.secret_file)
        body = plan.requests[0].body.encode()
        resp = await self._call(
            "POST", body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(key, body)}
        )
        try:
            answer = json.loads(resp.content[:MAX_BODY])
            said = answer.get("message") if isinstance(answer, dict) else None
        except ValueError:
            said = None
        return f"{plan.action} accepted by the webhook (HTTP {resp.status_code})" + (
            f": {said}" if said else ""
        )

    async def rollback(self, plan: Plan) -> str:
        return await self._send(plan)

    async def promote(self, plan: Plan) -> str:
        return await self._send(plan)

    async def close(self) -> None:
        await self._client.aclose()


def _public(url: str) -> str:
    parts = httpx.URL(url)
    return str(parts.copy_with(username=None, password=None)) if parts.userinfo else url


def _excerpt(resp: httpx.Response) -> str:
    text = resp.content[:200].decode(errors="replace").strip()
    return f": {text}" if text else ""


def _text(v: object) -> str | None:
    return None if v is None else str(v)


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
