"""Quitting with allow/deny rules still enforced: say which, ask keep or remove.

Rules that enforce outlive the dashboard on purpose; `q` lists them and the operator
keeps them (quit), removes them (through the action path: confirmed, audited; a
failure keeps the dashboard open so the rules stay in sight) or stays. Read-only
and replays quit without asking: they cannot remove anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ebpftop.actions.rules import DeleteRules
from ebpftop.actions.rules_change import plan_change
from ebpftop.collectors.rules.model import RulesData
from ebpftop.collectors.rules.summary import enforced_lines
from ebpftop.core.settings import Settings
from ebpftop.core.store import Store

from .action_path import ActionPath, ActionRequest, Dialogs, Run, through_gate
from .screens.quit_rules import QuitRulesScreen

if TYPE_CHECKING:
    from textual.app import App


def enforced(store: Store, now: float) -> list[str]:
    """One line per allow/deny rule enforcing now (empty without rules data)."""
    snap = store.latest("rules")
    data = snap.data if snap is not None else None
    return enforced_lines(data, now) if isinstance(data, RulesData) else []


async def ask_and_quit(app: App[Any], path: ActionPath, lines: list[str], remove: ActionRequest) -> None:
    """In a worker: keep (quit), remove (then quit if it worked) or stay."""
    choice = await app.push_screen_wait(QuitRulesScreen(lines))
    if choice is None:
        return
    if choice == "remove":
        result = await path.run(remove)
        if result is None or not result.ok:
            return  # the failure was reported; stay so the operator sees the rules
    app.exit()


def remove_enforced_request(settings: Settings, store: Store) -> ActionRequest:
    """Delete every allow/deny rule that has not expired, as one audited change."""

    async def prepare(dialogs: Dialogs) -> Run | None:
        snap = store.latest("rules")
        data = snap.data if snap is not None else None
        if not isinstance(data, RulesData):
            raise ValueError("no rules data")
        ids = [r.id for r in data.rules if r.action != "count" and not r.expired]
        return through_gate(*await plan_change(settings, DeleteRules(ids), dialogs.actor))

    return ActionRequest(
        "rules.delete", "Remove enforced rules", prepare, failed_prefix="cannot remove rules"
    )
