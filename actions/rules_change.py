"""The Rules pane's changes as gate actions: the builders are `actions.rules.plan`
(the same the CLI uses); this adds what only the dashboard knows — the preview against
the recent flows — to what the confirmation says, so a change to deny states the
traffic it will drop.

Edit has no request of its own in `plan`: it is a `LoadRules` of the current set with the
one rule replaced (one switch; untouched rules keep ids, counters and TTLs), shown and
audited as `rules.edit` with the old and the new text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Awaitable, Callable, Sequence

from ebpftop.actions import rules as rule_actions
from ebpftop.actions.rules import AddRule, DeleteRules, LoadRules, RuleRequest, SetRuleAction
from ebpftop.actions.rules_progress import PROGRESS, tracked
from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.model import RuleRecord, rule_of
from ebpftop.collectors.rules.preview import describe, preview
from ebpftop.collectors.rules.spec import Rule, format_rule
from ebpftop.core.audit import Actor
from ebpftop.core.gate import Action
from ebpftop.core.settings import Settings

Perform = Callable[[], Awaitable[str]]


def flows_line(rule: Rule, flows: Sequence[FlowRecord], earlier: list[Rule]) -> str:
    """What `rule` would have matched in the recent flows, in one sentence."""
    if not flows:
        return "No recent flows to preview against (the flows source has no data yet)."
    text = preview(rule, flows, earlier).text
    return text[:1].upper() + text[1:] + "."


def editor_preview(rule: Rule, flows: Sequence[FlowRecord], earlier: list[Rule]) -> str:
    """The editor's live preview: the rule in words, then what it would have matched."""
    return f"It {describe(rule)}.\n{flows_line(rule, flows, earlier)}"


def current_rules(records: Sequence[RuleRecord]) -> list[Rule]:
    return [r for r in (rule_of(rec) for rec in records) if r is not None]


def _earlier(records: Sequence[RuleRecord], position: int) -> list[Rule]:
    return current_rules([r for r in records if r.position < position])


def _more(action: Action, text: str) -> Action:
    return dataclasses.replace(action, description=action.description + "\n" + text)


async def plan_change(
    settings: Settings, request: RuleRequest, actor: Actor, title: str = ""
) -> tuple[Action, Perform]:
    """`actions.rules.plan` for this dashboard: its perform tells `PROGRESS` what it does
    (the Rules pane shows it, whichever pane started the change)."""
    # plan() reads the pinned set (bpf syscalls, a metadata file): off the UI thread
    action, perform = await asyncio.to_thread(
        rule_actions.plan, settings, request, actor, session=os.getpid(), progress=PROGRESS.step
    )
    return action, tracked(title or action.title, perform)


async def read_rules(settings: Settings) -> list[Rule]:
    """The rules enforced now, in priority order (`actions.rules.read_rules`, off the loop)."""
    return await asyncio.to_thread(rule_actions.read_rules, settings)


def warm(settings: Settings) -> None:
    """Compile the rules program while the operator writes a rule (`actions.rules.warm`),
    in a daemon thread: quitting meanwhile does not wait for the compile (nothing of it
    is pinned yet, so nothing is left behind)."""
    threading.Thread(target=rule_actions.warm, args=(settings,), name="rules-warm", daemon=True).start()


async def add(
    settings: Settings,
    rule: Rule,
    earlier: Sequence[Rule],
    flows: Sequence[FlowRecord],
    actor: Actor,
    *,
    first: bool = False,
) -> tuple[Action, Perform]:
    """Add `rule` last (`first`: ahead of every rule); `earlier`: the rules now enforced,
    in priority order (those ahead of it take their flows first)."""
    action, perform = await plan_change(settings, AddRule(rule, 0 if first else None), actor)
    ahead = [] if first else list(earlier)
    where = "It goes first (highest priority). " if first else "It goes last (lowest priority). "
    return _more(action, where + flows_line(rule, flows, ahead)), perform


async def delete(settings: Settings, rec: RuleRecord, actor: Actor) -> tuple[Action, Perform]:
    action, perform = await plan_change(settings, DeleteRules([rec.id]), actor)
    what = f"Its counters go with it ({rec.packets} packets, {rec.bytes} bytes)."
    if rec.action == "deny" and not rec.expired:
        what += " Traffic it drops now passes again."
    return _more(action, what), perform


def toggled(action: str) -> str | None:
    """`t` flips count <-> deny; allow has no counterpart (edit it instead)."""
    return {"count": "deny", "deny": "count"}.get(action)


async def toggle(
    settings: Settings,
    rec: RuleRecord,
    records: Sequence[RuleRecord],
    flows: Sequence[FlowRecord],
    actor: Actor,
) -> tuple[Action, Perform]:
    new = toggled(rec.action)
    if new is None:
        raise ValueError(f"rule {rec.id} is {rec.action}: t switches count and deny only; e edits it")
    action, perform = await plan_change(settings, SetRuleAction(rec.id, new), actor)
    rule = rule_of(rec)
    if new == "deny" and rule is not None:
        action = _more(action, flows_line(rule.with_(action="deny"), flows, _earlier(records, rec.position)))
    elif new == "count":
        action = _more(action, "Traffic it drops now passes again (and is still counted).")
    return action, perform


async def edit(
    settings: Settings,
    rec: RuleRecord,
    new: Rule,
    records: Sequence[RuleRecord],
    flows: Sequence[FlowRecord],
    actor: Actor,
) -> tuple[Action, Perform]:
    """Replace rule `rec` by `new` at the same priority, as one switch."""
    rules: list[Rule] = []
    new = new.with_(session=os.getpid() if new.action == "count" else 0)
    for r in records:
        if r.id == rec.id:
            rules.append(new)
            continue
        same = rule_of(r)
        if same is None:
            raise ValueError(f"rule {r.id} could not be read back ({r.text!r}); use the CLI")
        # ttl=None: `replace` then keeps this rule's id, counters and expiry as they are
        rules.append(same.with_(ttl=None))
    load, perform = await plan_change(settings, LoadRules(rules), actor, f"Edit rule {rec.id}")
    old_text, new_text = rec.text, format_rule(new)
    where = await asyncio.to_thread(rule_actions.where_and_how_long_at, settings, rules, new)
    desc = (
        f"Edit rule {rec.id} (priority {rec.position + 1}):\n  was: {old_text}\n  now: {new_text}\n"
        f"It {describe(new)}.\n{where}\n{flows_line(new, flows, _earlier(records, rec.position))}\n"
        "Applied as one switch; the other rules keep their ids, counters and expiry."
        + (" The TTL starts again now." if new.ttl else "")
    )
    action = Action(
        "rules.edit",
        f"Edit rule {rec.id}",
        desc,
        target=str(rec.id),
        params={"id": rec.id, "old": old_text, "new": new_text, "position": rec.position},
        dangerous=new.action == "deny" or load.dangerous,
    )
    return action, perform
