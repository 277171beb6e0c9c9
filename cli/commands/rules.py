"""`ebpftop rules list | add | del | flush | check | load`: the enforced rule set.

Changes go through the action gate, confirmed on the terminal (unless --yes); rule
text: collectors/rules/README.md. Exit codes: 0 done, 1 the change failed, 2 bad rule
text or usage (with line:column), 3 refused (read-only) or not confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from ..confirm import ask, say, told

if TYPE_CHECKING:
    from ebpftop.collectors.rules.spec import Rule
    from ebpftop.core.gate import Action
    from ebpftop.core.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "rules",
        help="list, add, delete, check or load policy rules (BPF, pinned)",
        description=__doc__.split("\n\n")[0],
    )
    sub = p.add_subparsers(dest="rules_verb", metavar="{list,add,del,flush,check,load}")
    sub.required = True
    ls = sub.add_parser("list", help="the enforced rules with their counters")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    add = sub.add_parser("add", help="add one rule (last, or at --position)")
    add.add_argument("rule", nargs="+", help="rule text (quote it, or pass it as words)")
    add.add_argument("--position", type=int, default=None, help="0 = highest priority; default: last")
    rm = sub.add_parser("del", help="delete rules by id")
    rm.add_argument("ids", nargs="+", type=int, metavar="ID")
    sub.add_parser("flush", help="delete every rule and detach the rules program")
    chk = sub.add_parser("check", help="validate a rule file without applying it")
    chk.add_argument("file", metavar="FILE|-")
    ld = sub.add_parser("load", help="replace the whole rule set with a file's rules, atomically")
    ld.add_argument("file", metavar="FILE|-")
    for q in (add, rm, sub.choices["flush"], ld):
        q.add_argument("--yes", action="store_true", help="do not ask; still audited")
    p.set_defaults(func=run)


def _read(path: str) -> str | None:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        say(f"ebpftop rules: cannot read {path}: {exc.strerror}", err=True)
        return None


def _parse_file(path: str) -> list[Rule] | None:
    from ebpftop.collectors.rules.grammar import parse_text
    from ebpftop.collectors.rules.layout import MAX_RULES

    text = _read(path)
    if text is None:
        return None
    rules, errors = parse_text(text)
    name = "<stdin>" if path == "-" else path
    for e in errors:
        say(f"{name}:{e.line}:{e.col}: {e.term!r}: {e.reason}", err=True)
    if not errors and len(rules) > MAX_RULES:
        line = rules[MAX_RULES][0]
        say(
            f"{name}:{line}:1: rule {MAX_RULES + 1}: "
            f"the datapath holds at most {MAX_RULES} rules; nothing applied",
            err=True,
        )
        return None
    return None if errors else [r for _, r in rules]


def run(args: argparse.Namespace) -> int:
    if args.rules_verb == "check":
        rules = _parse_file(args.file)
        if rules is None:
            return 2
        say(f"ok: {len(rules)} rule{'s' if len(rules) != 1 else ''}, nothing applied")
        return 0

    from ebpftop.cli.options import LAB_UNUSED, load_or_exit

    settings = load_or_exit(args, lab=LAB_UNUSED)  # the lab sets no rules setting
    if os.geteuid() != 0:
        say("ebpftop rules: needs root (pinned BPF maps); run with sudo", err=True)
        return 2
    if args.rules_verb == "list":
        return _list(settings, args.json)
    return asyncio.run(_change(args, settings))


def _list(settings: Settings, as_json: bool) -> int:
    from ebpftop.collectors.rules.collector import rules_data

    data = rules_data(settings)
    if as_json:
        from ebpftop.core.codec import to_jsonable

        print(json.dumps(to_jsonable(data), indent=1))
        return 0 if data.problem is None else 1
    if data.problem:
        say(f"ebpftop rules: {data.problem}", err=True)
    if not data.rules:
        say("no rules enforced")
        return 0 if data.problem is None else 1
    now = time.time()
    say(f"{'id':>4} {'packets':>10} {'bytes':>12} {'last hit':>9}  rule  [author, age, expiry]")
    for r in data.rules:
        last = "never" if r.last_hit is None else f"{now - r.last_hit:.0f}s ago"
        exp = (
            "no expiry"
            if r.expires is None
            else ("EXPIRED (no longer matches)" if r.expired else f"expires in {r.expires - now:.0f}s")
        )
        say(
            f"{r.id:>4} {r.packets:>10} {r.bytes:>12} {last:>9}  {r.text}  "
            f"[{r.author or '?'}, {now - r.created:.0f}s old, {exp}]"
        )
    return 0


async def _change(args: argparse.Namespace, settings: Settings) -> int:
    from ebpftop.actions.rules import AddRule, DeleteRules, FlushRules, LoadRules, RuleRequest, plan
    from ebpftop.collectors.rules.grammar import RuleError, parse_rule
    from ebpftop.core.audit import Actor
    from ebpftop.core.runtime import audited_gate

    if args.rules_verb == "add":
        text = " ".join(args.rule)
        try:
            rule = parse_rule(text)
        except RuleError as exc:
            say(f"ebpftop rules add: {exc}", err=True)
            say(f"  {text}", err=True)
            say("  " + " " * (exc.col - 1) + "^", err=True)
            return 2
        if rule is None:
            say("ebpftop rules add: no rule given", err=True)
            return 2
        request: RuleRequest = AddRule(rule, args.position)
    elif args.rules_verb == "del":
        request = DeleteRules(args.ids)
    elif args.rules_verb == "flush":
        request = FlushRules()
    else:
        rules = _parse_file(args.file)
        if rules is None:
            return 2
        request = LoadRules(rules)
    gate = audited_gate(settings)
    actor = Actor.current()
    action, perform = plan(settings, request, actor)
    result = await gate.execute(action, perform, told if args.yes else _ask)
    say(f"ebpftop rules {args.rules_verb}: {result.message}", err=not result.ok)
    if result.ok:
        return 0
    return 3 if result.refused or result.cancelled else 1


async def _ask(action: Action) -> bool:
    return await ask(action, "Apply? [y/N] ", lambda answer: answer.lower() in ("y", "yes"))
