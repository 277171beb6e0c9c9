"""The rollout payload: per service, what its controller says (revisions, weights,
phase, step) and what ebpftop could do about it (rollback, promote, or why not).

`Request` and `Plan` are the dry run: exactly what an action would send, where.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ebpftop.core.alarms import Alarm, register_alarms
from ebpftop.core.model import Snapshot, register_payload
from ebpftop.core.untrusted import clean


@dataclass(frozen=True)
class Request:
    """One thing an action sends. Secrets never appear here (headers say how they are made)."""

    method: str  # HTTP method, or "runtime-api" for an HAProxy command
    target: str  # URL or socket address
    body: str = ""  # JSON body, or the command line
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        # Lines are ours; every value in them is cleaned, so a newline inside a server
        # name or a body cannot fake a line of the confirmation.
        head = f"{clean(self.method)} {clean(self.target)}"
        hdrs = "".join(f"\n  {clean(k)}: {clean(v)}" for k, v in self.headers)
        body = f"\n  {clean(self.body)}" if self.body else ""
        return head + hdrs + body


@dataclass(frozen=True)
class Plan:
    """What an action on one controller would send, in order."""

    action: str  # "rollback" or "promote"
    controller: str  # "haproxy", "argo", "webhook"
    endpoint: str  # where the controller is (socket, API server, URL)
    summary: str  # one line: what it means ("canary servers be_app/canary to weight 0")
    requests: tuple[Request, ...]
    note: str = ""  # conditional behaviour, e.g. "on 404 the same patch goes to the resource"

    def steps(self) -> list[str]:
        """What is sent, a request per entry, then the note on conditional behaviour."""
        return [r.describe() for r in self.requests] + ([clean(self.note)] if self.note else [])

    def describe(self) -> str:
        head = f"{self.action} via {self.controller} at {clean(self.endpoint)}: {clean(self.summary)}"
        return "\n".join([head, *self.steps()])


@dataclass(frozen=True)
class Backend:
    """One server behind a controller (HAProxy) as it reported itself."""

    name: str
    variant: str  # "canary", "stable" or "" (neither)
    weight: int
    state: str  # running / stopped / ..., plus drain / maint when set
    addr: str = ""


@dataclass(frozen=True)
class RolloutState:
    service: str
    controller: str
    endpoint: str
    stable_revision: str | None = None
    canary_revision: str | None = None
    stable_weight: float | None = None  # percent of traffic, 0..100; None is unknown
    canary_weight: float | None = None
    phase: str = ""  # the controller's word: Progressing, Paused, Degraded, Healthy, rolled back ...
    step: int | None = None  # current step index (Argo), 0-based
    steps: int | None = None
    last_change: float | None = None  # wall clock of the last change the controller reported
    message: str = ""  # the controller's own message, if any
    backends: tuple[Backend, ...] = ()
    can_rollback: bool = True
    rollback_reason: str = ""  # why rollback is disabled
    can_promote: bool = False
    promote_reason: str = "not supported by this controller"
    version: str = ""  # opaque change marker (Kubernetes resourceVersion), "" when none
    # A rollback ebpftop made and remembers (collectors/rollout/memory.py): when, what undo
    # would set ("" when there is none), and since when the canary takes traffic again.
    rolled_back_at: float | None = None
    undo: str = ""
    reverted_since: float | None = None


@dataclass(frozen=True)
class RolloutData:
    services: tuple[RolloutState, ...]


register_payload("rollout", RolloutData)


def reverted_text(service: str, canary_weight: float | None, since: float) -> str:
    """The alarm's line: a rollback ebpftop made that something else undid."""
    share = "?" if canary_weight is None else f"{canary_weight:.0f}%"
    return (
        f"rollback of {service} reverted: canary back at {share} since "
        f"{time.strftime('%H:%M:%S', time.localtime(since))}"
    )


_ROLLED_BACK = ("rolled back", "abort")  # in a phase: HAProxy's, Argo's "(aborted)", a webhook's


def rolled_back_since(s: RolloutState) -> tuple[bool, float | None]:
    """Whether the canary stands rolled back, and since when when known: ebpftop's own
    rollback (remembered, not reverted), else the controller's phase with its last change."""
    if s.rolled_back_at is not None and s.reverted_since is None:
        return True, s.rolled_back_at
    if any(word in s.phase.lower() for word in _ROLLED_BACK):
        return True, s.last_change
    return False, None


def rolled_back_text(service: str, since: float | None) -> str:
    when = f" {time.strftime('%H:%M:%S', time.localtime(since))}" if since is not None else ""
    return f"{service} rolled back{when}"


def rollout_alarms(latest: Snapshot, _history: Sequence[Snapshot]) -> Iterator[Alarm]:
    """A remembered rollback whose canary takes traffic again (HAProxy reloaded its
    configured weights, or someone set them): the operator believes it is rolled back.
    And a canary that stands rolled back: the header says so, and since when, beside the
    verdict that led to it."""
    data = latest.data
    if not isinstance(data, RolloutData):
        return
    for s in data.services:
        yield from _backends_down(s)
        back, since = rolled_back_since(s)
        if back and not (s.canary_weight or 0) > 0:
            detail = {
                "service": s.service,
                "since": since,
                "phase": s.phase,
                "rolled_back_at": s.rolled_back_at,
            }
            yield Alarm("rollout", "warning", rolled_back_text(s.service, since), "rolled_back", detail)
        if s.reverted_since is not None and (s.canary_weight or 0) > 0:
            yield Alarm(
                "rollout",
                "error",
                reverted_text(s.service, s.canary_weight, s.reverted_since),
                "rollback_reverted",
                {
                    "service": s.service,
                    "canary_weight": s.canary_weight,
                    "rolled_back_at": s.rolled_back_at,
                    "reverted_since": s.reverted_since,
                    "undo": s.undo,
                },
            )


def _backends_down(s: RolloutState) -> Iterator[Alarm]:
    """A server the controller stopped sending to on its own (HAProxy: health checks fail,
    its admin state is ready): the service is down there, whatever its weight. A server
    put in maintenance or drained on purpose is not."""
    for b in s.backends:
        if b.state == "stopped":
            what = f"{s.service} {b.variant}" if b.variant else s.service
            text = f"{what} down: {s.controller} server {b.name} stopped (health checks fail)"
            detail = {"service": s.service, "server": b.name, "variant": b.variant, "addr": b.addr}
            yield Alarm("rollout", "error", text, "backend_down", detail)


register_alarms("rollout", rollout_alarms)
