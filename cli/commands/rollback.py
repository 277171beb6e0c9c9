"""`ebpftop rollback SERVICE [--undo] [--yes] [--dry-run]`: all traffic to stable, through the gate.

Shows the evidence and exactly what will be sent, asks for the service name (unless
--yes); --dry-run sends and writes nothing. --undo sets back exactly what ebpftop's last
rollback of SERVICE changed (the `U` key), shown and confirmed the same way. Exit codes:
0 done (or dry run shown), 1 failed or cannot be offered, 2 bad usage or configuration,
3 refused (read-only) or not confirmed."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from ebpftop.core.untrusted import clean

from ..confirm import ask, say, told

if TYPE_CHECKING:
    from ebpftop.collectors.canary.data import ServiceCanary
    from ebpftop.collectors.rollout.base import Controller
    from ebpftop.collectors.rollout.model import RolloutState
    from ebpftop.core.gate import Action
    from ebpftop.core.settings import Settings

EVIDENCE_TIMEOUT = 15.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "rollback",
        help="roll a canary back (all traffic to stable) through the action gate",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("service", metavar="SERVICE", help="the service to roll back ([rollout] service)")
    p.add_argument(
        "--yes", action="store_true", help="do not ask for the service name (scripts); still audited"
    )
    p.add_argument("--dry-run", action="store_true", help="print exactly what would be sent; send nothing")
    p.add_argument(
        "--undo", action="store_true", help="undo ebpftop's last rollback: set back exactly what it changed"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ebpftop.cli.options import load_or_exit
    from ebpftop.collectors.rollout.base import ControllerError
    from ebpftop.collectors.rollout.collector import controller_from

    settings = load_or_exit(args)
    try:
        controller = controller_from(settings)
    except ControllerError as exc:
        say(f"ebpftop: {exc}", err=True)
        return 2
    if controller is None:
        say(
            "ebpftop: no rollout controller configured: set [rollout] controller (haproxy, argo or webhook) "
            "and its address (see `ebpftop --help-config`), or use --lab",
            err=True,
        )
        return 2
    if args.service != controller.service:
        say(
            f"ebpftop: no rollout controller for service {args.service!r}; the configured service is "
            f"{controller.service!r} ([rollout] service)",
            err=True,
        )
        asyncio.run(controller.close())
        return 2
    return asyncio.run(_run(args, settings, controller))


async def _run(args: argparse.Namespace, settings: Settings, controller: Controller) -> int:
    from ebpftop.actions.rollback import RollbackUnavailable, run_rollback
    from ebpftop.collectors.rollout.base import ControllerError
    from ebpftop.core.runtime import audited_gate

    try:
        try:
            state = await controller.state()
        except ControllerError as exc:
            say(f"ebpftop: cannot read the rollout state of {args.service}: {exc}", err=True)
            if not args.dry_run:
                return 1
            state = None
        if state is not None:
            say(describe_state(state))
        if args.undo:
            return await _undo(args, settings, controller)
        if args.dry_run:
            say("dry run: nothing is sent. A rollback would send:")
            say(controller.plan_rollback(state).describe())
            if state is not None and not state.can_rollback:
                say(f"(and it would be refused: {state.rollback_reason})")
            return 0
        evidence = await _evidence(settings, args.service)
        gate = audited_gate(settings)
        try:
            result = await run_rollback(
                gate, controller, args.service, evidence, told if args.yes else _ask, state=state
            )
        except RollbackUnavailable as exc:
            say(f"ebpftop: {exc}", err=True)
            return 1
    finally:
        await controller.close()
    say(f"ebpftop: rollback of {args.service}: {result.message}", err=not result.ok)
    if result.ok:
        return 0
    return 3 if result.refused or result.cancelled else 1


async def _undo(args: argparse.Namespace, settings: Settings, controller: Controller) -> int:
    from ebpftop.actions.rollback import RollbackUnavailable
    from ebpftop.actions.undo_rollback import run_undo
    from ebpftop.collectors.rollout.base import ControllerError
    from ebpftop.core.runtime import audited_gate

    if args.dry_run:
        try:
            plan = controller.plan_undo()
        except ControllerError as exc:
            say(f"ebpftop: {exc}", err=True)
            return 1
        say("dry run: nothing is sent. Undoing the rollback would send:")
        say(plan.describe())
        return 0
    evidence = await _evidence(settings, args.service)
    try:
        result = await run_undo(
            audited_gate(settings), controller, args.service, evidence, told if args.yes else _ask
        )
    except RollbackUnavailable as exc:
        say(f"ebpftop: {exc}", err=True)
        return 1
    say(f"ebpftop: undo of the rollback of {args.service}: {result.message}", err=not result.ok)
    if result.ok:
        return 0
    return 3 if result.refused or result.cancelled else 1


def describe_state(state: RolloutState) -> str:
    def pct(v: float | None) -> str:
        return "?" if v is None else f"{v:.0f}%"

    step = "" if state.step is None else f", step {state.step}" + (f"/{state.steps}" if state.steps else "")
    return (
        f"{state.service} via {state.controller} ({state.endpoint}): phase {state.phase or '?'}{step}; "
        f"traffic stable {pct(state.stable_weight)} / canary {pct(state.canary_weight)} "
        f"(revisions: stable {state.stable_revision or '?'}, canary {state.canary_revision or '?'})"
    )


async def _evidence(settings: Settings, service: str) -> ServiceCanary | None:
    """One canary evaluation of `service` for the confirmation and the audit log; None if none."""
    if not settings.prometheus_url:
        say("(no canary evidence: Prometheus is not configured)")
        return None
    from ebpftop.collectors.canary.collector import CanaryCollector

    collector = CanaryCollector(settings)
    try:
        await collector.start()
        data = await asyncio.wait_for(collector.collect(), EVIDENCE_TIMEOUT)
    except Exception as exc:
        say(f"(no canary evidence: {type(exc).__name__}: {exc})")
        return None
    finally:
        await collector.close()
    found = next((s for s in data.services if s.name == service), None)
    if found is None:
        say(
            f"(no canary evidence: the canary pane watches {', '.join(s.name for s in data.services)}, "
            f"not {service})"
        )
    else:
        say(
            "(one evaluation only: "
            f"the verdict needs {settings.canary_persist} breaching evaluations in a row to fail)"
        )
    return found


async def _ask(action: Action) -> bool:
    # Typing the service name is the confirmation, piped or not.
    return await ask(
        action,
        f"Type the service name ({clean(action.confirm_text)}) to confirm, anything else cancels: ",
        lambda answer: answer == action.confirm_text,
        tty_only=False,
    )
