"""Rule changes as gate actions: what the confirmation shows, what the audit log keeps,
and the perform step (the one switch). The CLI verbs and the Rules pane use these.

A change to deny states the traffic it will drop; a load lists what it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ebpftop.collectors.rules.preview import describe
from ebpftop.collectors.rules.ruleset import Progress, RuleBook
from ebpftop.collectors.rules.spec import Rule, format_duration, format_rule
from ebpftop.core.audit import Actor
from ebpftop.core.gate import Action, Gate
from ebpftop.core.settings import Settings

log = logging.getLogger(__name__)


def author_of(actor: Actor) -> str:
    return (
        f"{actor.user}@{actor.ssh_client}"
        if getattr(actor, "ssh_client", "")
        else str(getattr(actor, "user", ""))
    )


@dataclass(frozen=True)
class AddRule:
    rule: Rule
    position: int | None = None  # None: last (lowest priority)


@dataclass(frozen=True)
class DeleteRules:
    ids: Sequence[int]


@dataclass(frozen=True)
class SetRuleAction:
    id: int
    action: str  # allow, deny or count


def switched(rule: Rule, action: str) -> Rule:
    """`rule` with another action: a session's count rule that starts enforcing is no
    longer the session's (it stays after exit, and the dialog says so)."""
    return rule.with_(action=action, session=rule.session if action == "count" else 0)


@dataclass(frozen=True)
class MoveRule:
    id: int
    position: int  # 0 = first match


@dataclass(frozen=True)
class FlushRules:
    pass


@dataclass(frozen=True)
class LoadRules:
    rules: Sequence[Rule]  # the whole new set, in priority order


RuleRequest = AddRule | DeleteRules | SetRuleAction | MoveRule | FlushRules | LoadRules
Change = Callable[[], str]  # the switch itself, blocking (bpf syscalls): run in a thread


def plan(
    settings: Settings,
    request: RuleRequest,
    actor: Actor,
    *,
    session: int = 0,
    progress: Progress | None = None,
) -> tuple[Action, Callable[[], Awaitable[str]]]:
    """The gate action for `request` and its perform step. `session`: the dashboard pid
    for session-scoped count rules; `progress` is told each step while perform runs
    (from its thread)."""
    book = RuleBook.from_settings(settings)
    if progress is not None:
        book.progress = progress
    author = author_of(actor)
    try:
        action, change = _planned(book, request, author, session)
    finally:
        # The reads opened pinned maps; a cancelled or refused action never runs
        # perform, so release them now (the book reopens them lazily when it applies).
        book.close()

    async def perform() -> str:
        try:
            return await asyncio.to_thread(change)
        finally:
            book.close()

    return action, perform


def _planned(book: RuleBook, request: RuleRequest, author: str, session: int) -> tuple[Action, Change]:
    match request:
        case AddRule():
            return _add(book, request, author, session)
        case DeleteRules():
            return _delete(book, request, author)
        case SetRuleAction():
            return _set_action(book, request, author)
        case MoveRule():
            return _move(book, request, author)
        case FlushRules():
            return _flush(book, author)
        case LoadRules():
            return _load(book, request, author)
    raise ValueError(f"unknown rules request {request!r}")


def _current(book: RuleBook, rule_id: int) -> Rule | None:
    return next((r for r in book.read().rules if r.id == rule_id), None)


def interfaces_line(book: RuleBook, after: Sequence[Rule], rule: Rule) -> str:
    """Every interface `rule` will act on once the set is `after`, and which of them the
    change attaches the rules program to now (a rule without `on IFACE` acts wherever
    the program is attached, the host's own interfaces included)."""
    try:
        attached = book.attached_ifaces()
        targets = book.targets(list(after))
    except Exception as exc:  # the dialog says so rather than guess; the change reads them again
        log.warning("cannot tell the interfaces a rule acts on", exc_info=True)
        return f"Interfaces: could not be read ({type(exc).__name__}: {exc})."
    if rule.match.iface is not None:
        where = [rule.match.iface]
        how = "only this one: on IFACE"
    else:
        where = list(dict.fromkeys(attached + targets))
        how = "every interface the rules program is attached to"
    new = [i for i in where if i not in attached]
    text = f"Interfaces ({how}): {', '.join(where) or 'none'}"
    if new:
        text += f"; the rules program is attached now to {', '.join(new)}"
    return text + "."


def lifetime_line(rule: Rule) -> str:
    """Whether `rule` outlives ebpftop, and until when."""
    if rule.action == "count" and rule.session:
        return "After ebpftop exits: removed (a count rule of this dashboard session ends with it)."
    verb = "enforced" if rule.action != "count" else "counting"
    if rule.ttl:
        until = f"until its TTL of {format_duration(rule.ttl)} runs out (the kernel stops matching it then)"
    else:
        until = "with no expiry, until deleted (d in the Rules pane, `ebpftop rules del`, flush or cleanup)"
    return f"After ebpftop exits: it STAYS in the kernel (pinned), {verb}, {until}."


def where_and_how_long(book: RuleBook, after: Sequence[Rule], rule: Rule) -> str:
    return interfaces_line(book, after, rule) + "\n" + lifetime_line(rule)


def where_and_how_long_at(settings: Settings, after: Sequence[Rule], rule: Rule) -> str:
    """`where_and_how_long` with a book of its own (reads the pins: blocking)."""
    book = RuleBook.from_settings(settings)
    try:
        return where_and_how_long(book, after, rule)
    finally:
        book.close()


def _add(book: RuleBook, request: AddRule, author: str, session: int) -> tuple[Action, Change]:
    rule = request.rule.with_(session=session if request.rule.action == "count" else 0)
    text = format_rule(rule)
    after = list(book.read().rules)
    after.insert(len(after) if request.position is None else max(0, request.position), rule)
    action = Action(
        "rules.add",
        "Add rule",
        f"Add rule: {text}\nIt {describe(rule)}.\n{where_and_how_long(book, after, rule)}",
        target=text,
        params={"rule": text, "position": request.position},
        dangerous=rule.action == "deny",
    )
    return action, lambda: book.add(rule, author, request.position).summary()


def _delete(book: RuleBook, request: DeleteRules, author: str) -> tuple[Action, Change]:
    ids = list(request.ids)
    current = {r.id: r for r in book.read().rules}
    lines = [f"  {i}: {format_rule(current[i])}" if i in current else f"  {i}: (no such rule)" for i in ids]
    action = Action(
        "rules.delete",
        "Delete rules",
        "Delete:\n" + "\n".join(lines),
        target=",".join(map(str, ids)),
        params={"ids": ids},
    )
    return action, lambda: book.delete(ids, author).summary()


def _set_action(book: RuleBook, request: SetRuleAction, author: str) -> tuple[Action, Change]:
    rule_id, new_action = request.id, request.action
    rules = book.read().rules
    cur = next((r for r in rules if r.id == rule_id), None)
    desc = f"Rule {rule_id}: {format_rule(cur) if cur else '(no such rule)'}\nbecomes {new_action}"
    if cur is not None:
        new = switched(cur, new_action)
        after = [new if r.id == rule_id else r for r in rules]
        desc += f": it {describe(new)}.\n{where_and_how_long(book, after, new)}"
    action = Action(
        "rules.action",
        f"Make rule {rule_id} {new_action}",
        desc,
        target=str(rule_id),
        params={"id": rule_id, "action": new_action},
        dangerous=new_action == "deny",
    )
    return action, lambda: book.set_action(rule_id, new_action, author).summary()


def _move(book: RuleBook, request: MoveRule, author: str) -> tuple[Action, Change]:
    rule_id, position = request.id, request.position
    cur = _current(book, rule_id)
    desc = (
        f"Move rule {rule_id} ({format_rule(cur) if cur else 'no such rule'}) to position {position} "
        "(0 = first match)"
    )
    action = Action(
        "rules.move",
        f"Move rule {rule_id}",
        desc,
        target=str(rule_id),
        params={"id": rule_id, "position": position},
        dangerous=cur is not None and cur.action == "deny",
    )
    return action, lambda: book.move(rule_id, position, author).summary()


def _flush(book: RuleBook, author: str) -> tuple[Action, Change]:
    n = len(book.read().rules)
    action = Action(
        "rules.flush",
        "Remove every rule",
        f"Remove all {n} rules and detach the rules program (enforcement stops).",
        params={"rules": n},
        dangerous=True,
    )
    return action, lambda: book.flush(author).summary()


def _load(book: RuleBook, request: LoadRules, author: str) -> tuple[Action, Change]:
    rules = list(request.rules)
    n_old = len(book.read().rules)
    lines = [f"  {format_rule(r)}" for r in rules]
    denies = [r for r in rules if r.action == "deny"]
    desc = f"Replace the {n_old} current rules with these {len(rules)}:\n" + "\n".join(lines)
    for r in denies:
        desc += f"\nIt {describe(r)}.\n{where_and_how_long(book, rules, r)}"
    action = Action(
        "rules.load",
        "Load rule set",
        desc,
        params={"rules": [format_rule(r) for r in rules]},
        dangerous=bool(denies),
    )
    return action, lambda: book.replace(rules, author).summary()


def read_rules(settings: Settings) -> list[Rule]:
    """The rules enforced now, in priority order (reads the pins: blocking)."""
    book = RuleBook.from_settings(settings)
    try:
        return list(book.read().rules)
    finally:
        book.close()


def warm(settings: Settings) -> bool:
    """Compile the rules program ahead of a change that may come (an editor opened), so
    applying it does not wait for the compile. Blocking; best effort: a failure is
    logged and the change compiles as before. True when it compiled something."""
    if os.geteuid() != 0:
        return False
    try:
        return RuleBook.from_settings(settings).dp.warm()
    except Exception as exc:
        log.info("rules program not compiled in advance (the first change compiles it): %s", exc)
        return False


def session_end(book: RuleBook, pid: int) -> tuple[Action, Callable[[], Awaitable[str]]] | None:
    """The count rules dashboard `pid` added live, removed as it ends: an automatic
    action (each was confirmed as ending with its session when it was added), so it
    is audited like any other change. None when that session added none."""
    mine = [r for r in book.read().rules if r.session == pid and r.action == "count"]
    if not mine:
        return None
    ids = [r.id for r in mine]
    action = Action(
        "rules.delete",
        "Remove this session's count rules",
        "The dashboard session that added them ended. Delete:\n"
        + "\n".join(f"  {r.id}: {format_rule(r)}" for r in mine),
        target=",".join(map(str, ids)),
        params={"ids": ids, "session": pid},
    )

    async def perform() -> str:
        applied = await asyncio.to_thread(book.end_session, pid)
        return applied.summary() if applied is not None else "nothing to remove: already gone"

    return action, perform


async def end_session(settings: Settings, gate: Gate, pid: int | None = None) -> None:
    """Remove the count rules this dashboard added live, through `gate` as an automatic
    action: audited, and not removed when the audit log cannot say so. Registered on the
    dashboard's runtime as a closer; runs after the collectors stopped, so it opens a
    book of its own. Never raises: a failure is logged (the next rules change drops them)."""
    if os.geteuid() != 0:
        return  # the pins need root to read, and without root this session added none
    pid = os.getpid() if pid is None else pid
    book = RuleBook.from_settings(settings)
    try:
        planned = await asyncio.to_thread(session_end, book, pid)
        if planned is None:
            return
        result = await gate.execute(*planned, _never, automatic=True)
        if not result.ok:
            log.warning(
                "this session's count rules were not removed (the next rules change drops them): %s",
                result.message,
            )
    except Exception:
        log.warning("could not remove this session's count rules", exc_info=True)
    finally:
        book.close()


async def _never(_action: Action) -> bool:  # automatic: nothing is asked
    return False
