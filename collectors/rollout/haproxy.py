"""HAProxy as a canary controller, through its runtime API.

The split is the canary servers' share of the weights in one backend; rollback sets
their weight to 0 (and drain or maint, by `mode`). Runtime weights are not written to
haproxy.cfg: a reload restores them, and the rollback message says so. With a
`RollbackMemory`, a rollback remembers what it changed: undo sets exactly that back,
and the state says when the canary takes traffic again although ebpftop rolled it back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from .base import Controller, ControllerError
from .memory import Before, Remembered, RollbackMemory
from .model import Backend, Plan, Request, RolloutState, reverted_text
from .runtime_api import DEFAULT_BACKEND, RuntimeAPI, RuntimeAPIError, ServerState

MODES = ("weight", "drain", "maint")


class HAProxyController(Controller):
    kind = "haproxy"

    def __init__(
        self,
        service: str,
        address: str,
        *,
        backend: str = DEFAULT_BACKEND,
        canary: tuple[str, ...] = ("canary",),
        stable: tuple[str, ...] = ("stable",),
        mode: str = "weight",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        memory: RollbackMemory | None = None,
    ) -> None:
        super().__init__(service)
        if mode not in MODES:
            raise ControllerError(f"haproxy rollback mode {mode!r}: use one of {', '.join(MODES)}")
        if not canary:
            raise ControllerError("haproxy: no canary servers configured")
        overlap = set(canary) & set(stable)
        if overlap:
            raise ControllerError(
                f"haproxy: servers {', '.join(sorted(overlap))} are listed as both canary and stable"
            )
        self.api = RuntimeAPI(address, timeout=timeout)
        self.backend = backend
        self.canary = tuple(canary)
        self.stable = tuple(stable)
        self.mode = mode
        self._clock = clock
        self.memory = memory
        self._last: RolloutState | None = None
        self._last_weights: dict[str, tuple[int, str]] | None = None
        self._changed_at: float | None = None

    @property
    def endpoint(self) -> str:
        return f"runtime API {self.api.address}, backend {self.backend}"

    async def state(self) -> RolloutState:
        try:
            servers = await asyncio.to_thread(self.api.servers_state, self.backend)
        except RuntimeAPIError as exc:
            raise ControllerError(str(exc)) from None
        state = await asyncio.to_thread(self._remembered, self._state_from(servers))
        self._last = state
        return state

    def _remembered(self, state: RolloutState) -> RolloutState:
        """`state` with the rollback on record, and since when it is reverted."""
        if self.memory is None:
            return state
        try:
            entry = self.memory.find(self.api.address, self.backend)
            if entry is None:
                return state
            if entry.reverted_at is None and (state.canary_weight or 0) > 0:
                entry = self.memory.seen_reverted(
                    entry,
                    self._clock(),
                    lambda e: (
                        reverted_text(self.service, state.canary_weight, e.reverted_at or 0)
                        + f" (rolled back by ebpftop at {time.strftime('%H:%M:%S', time.localtime(e.at))}; "
                        "HAProxy reloaded or someone set the weights: ebpftop did not)"
                    ),
                )
        except ControllerError as exc:
            return replace(state, message=str(exc))
        return replace(
            state, rolled_back_at=entry.at, undo=entry.restores(), reverted_since=entry.reverted_at
        )

    def _state_from(self, servers: list[ServerState]) -> RolloutState:
        names = {s.name for s in servers}
        missing = [n for n in self.canary + self.stable if n not in names]
        if missing:
            raise ControllerError(
                f"haproxy backend {self.backend} has no server {', '.join(missing)} "
                f"(it has: {', '.join(sorted(names)) or 'none'}); "
                "fix [rollout] haproxy_canary_servers / haproxy_stable_servers"
            )
        now_weights = {s.name: (s.weight, s.admin) for s in servers}
        if self._last_weights is not None and now_weights != self._last_weights:
            self._changed_at = self._clock()
        self._last_weights = now_weights

        def serving(s: ServerState) -> int:
            return s.weight if s.op_state == "running" and s.admin == "ready" else 0

        canary_w = sum(serving(s) for s in servers if s.name in self.canary)
        stable_w = sum(serving(s) for s in servers if s.name in self.stable)
        total = canary_w + stable_w
        backends = tuple(
            Backend(
                s.name,
                "canary" if s.name in self.canary else "stable" if s.name in self.stable else "",
                s.weight,
                s.op_state if s.admin == "ready" else f"{s.op_state}, {s.admin}",
                f"{s.addr}:{s.port}" if s.port else s.addr,
            )
            for s in servers
        )
        if total == 0:
            phase = "no server takes traffic"
        elif canary_w == 0:
            phase = (
                "rolled back"
                if any(s.weight == 0 or s.admin != "ready" for s in servers if s.name in self.canary)
                else "canary down"
            )
        elif stable_w == 0:
            phase = "canary only"
        else:
            phase = "progressing"
        return RolloutState(
            service=self.service,
            controller=self.kind,
            endpoint=self.endpoint,
            stable_revision=", ".join(self.stable) or None,
            canary_revision=", ".join(self.canary),
            stable_weight=100.0 * stable_w / total if total else None,
            canary_weight=100.0 * canary_w / total if total else None,
            phase=phase,
            last_change=self._changed_at,
            backends=backends,
            can_rollback=True,
            can_promote=False,
            promote_reason="HAProxy: promote is a release decision; set weights in haproxy.cfg",
        )

    def commands(self) -> list[str]:
        out = []
        for server in self.canary:
            out.append(RuntimeAPI.weight_command(self.backend, server, 0))
            if self.mode != "weight":
                out.append(RuntimeAPI.state_command(self.backend, server, self.mode))
        return out

    def plan_rollback(self, state: RolloutState | None = None) -> Plan:
        cmds = self.commands()
        how = {"weight": "weight 0", "drain": "weight 0 and drain", "maint": "weight 0 and maintenance"}[
            self.mode
        ]
        return Plan(
            action="rollback",
            controller=self.kind,
            endpoint=self.endpoint,
            summary=f"canary server(s) {', '.join(self.canary)} of backend {self.backend} to {how}; "
            f"stable server(s) {', '.join(self.stable) or '(none)'} keep their weights",
            requests=tuple(Request("runtime-api", self.api.address, c) for c in cmds),
            note="runtime weights last until HAProxy reloads (haproxy.cfg is not changed)",
        )

    async def rollback(self, plan: Plan) -> str:
        try:
            before = await asyncio.to_thread(self.api.servers_state, self.backend)
        except RuntimeAPIError as exc:
            raise ControllerError(f"haproxy {exc} (nothing was applied)") from None
        await self._send(plan)
        after = await self.state()
        still = [b.name for b in after.backends if b.variant == "canary" and b.weight != 0]
        if still:
            raise ControllerError(
                f"haproxy accepted the commands but canary server(s) {', '.join(still)} "
                f"still have a weight: {after.backends}"
            )
        how = "" if self.mode == "weight" else f" and in {self.mode}"
        return (
            f"rolled back: canary server(s) {', '.join(self.canary)} at weight 0{how}, "
            f"stable now {_pct(after.stable_weight)} of traffic (until HAProxy reloads)"
            + await asyncio.to_thread(self._remember, before)
        )

    def _remember(self, before: list[ServerState]) -> str:
        """Keep what the rollback changed, for undo; the message's tail says what."""
        changed = tuple(
            Before(s.name, s.weight, s.admin if self.mode != "weight" and s.admin != self.mode else "")
            for s in before
            if s.name in self.canary and (s.weight != 0 or (self.mode != "weight" and s.admin != self.mode))
        )
        if not changed:
            return "; nothing changed, so the rollback on record (if any) stays what undo restores"
        entry = Remembered(self.service, self.api.address, self.backend, changed, self._clock())
        if self.memory is None:
            return f"; before: {entry.restores()}"
        try:
            self.memory.remember(entry)
        except ControllerError as exc:
            return f"; before: {entry.restores()} (undo cannot restore it: {exc})"
        return f"; before: {entry.restores()} (undo restores it)"

    def plan_undo(self) -> Plan:
        entry = self._on_record()
        return Plan(
            action="undo",
            controller=self.kind,
            endpoint=self.endpoint,
            summary=f"restore what the rollback at {_clock_time(entry.at)} changed: {entry.restores()}",
            requests=tuple(Request("runtime-api", self.api.address, c) for c in _undo_commands(entry)),
            note="runtime weights last until HAProxy reloads (haproxy.cfg is not changed)",
        )

    def _on_record(self) -> Remembered:
        entry = self.memory.find(self.api.address, self.backend) if self.memory is not None else None
        if entry is None:
            where = f" ({self.memory.path})" if self.memory is not None else ""
            raise ControllerError(
                f"nothing to undo: ebpftop has no rollback of backend {self.backend} at "
                f"{self.api.address} on record{where}"
            )
        return entry

    async def undo(self, plan: Plan) -> str:
        entry = await asyncio.to_thread(self._on_record)
        # Forgotten before sending: the rollout source, seeing the canary back in traffic,
        # must not take this undo for a reload that reverted the rollback.
        await asyncio.to_thread(self._forget)
        try:
            await self._send(plan)
            servers = {s.name: s for s in await asyncio.to_thread(self.api.servers_state, self.backend)}
        except (ControllerError, RuntimeAPIError) as exc:
            await asyncio.to_thread(self._keep, entry)
            raise ControllerError(f"{exc}; the rollback stays on record") from None
        wrong = [
            f"{b.name} weight {servers[b.name].weight} ({servers[b.name].admin})"
            for b in entry.before
            if b.name in servers
            and (servers[b.name].weight != b.weight or (b.admin and servers[b.name].admin != b.admin))
        ]
        if wrong:
            await asyncio.to_thread(self._keep, entry)
            raise ControllerError(
                f"haproxy accepted the commands but now has {', '.join(wrong)}; the rollback stays on record"
            )
        after = await self.state()
        return (
            f"undone: {entry.restores()} as before the rollback at {_clock_time(entry.at)}, "
            f"canary now {_pct(after.canary_weight)} of traffic (until HAProxy reloads)"
        )

    def _forget(self) -> None:
        if self.memory is not None:
            self.memory.forget(self.api.address, self.backend)

    def _keep(self, entry: Remembered) -> None:
        if self.memory is not None:
            self.memory.remember(entry)

    async def _send(self, plan: Plan) -> list[str]:
        done: list[str] = []
        for req in plan.requests:
            try:
                await asyncio.to_thread(self.api.run_silent, req.body)
            except RuntimeAPIError as exc:
                applied = f" (already applied: {'; '.join(done)})" if done else " (nothing was applied)"
                raise ControllerError(f"haproxy {exc}{applied}") from None
            done.append(req.body)
        return done


def _undo_commands(entry: Remembered) -> list[str]:
    out = []
    for b in entry.before:
        out.append(RuntimeAPI.weight_command(entry.backend, b.name, b.weight))
        if b.admin:  # the rollback drained or stopped it too
            out.append(RuntimeAPI.state_command(entry.backend, b.name, b.admin))
    return out


def _clock_time(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}%"
