"""The rules payload: what `ebpftop snapshot --json`, `rules list --json` and the Rules
pane carry. Times are wall-clock seconds; rates per second; None when not known."""

from __future__ import annotations

from dataclasses import dataclass

from ebpftop.core.model import register_payload

from .grammar import RuleError, parse_rule
from .spec import Rule


@dataclass(frozen=True)
class RuleRecord:
    id: int
    position: int  # 0 = highest priority
    action: str
    text: str  # canonical rule text
    packets: int
    bytes: int
    pps: float | None  # over the last tick; None until two samples
    bps: float | None  # bytes per second
    last_hit: float | None
    author: str
    created: float
    expires: float | None
    expired: bool  # its TTL passed: the kernel no longer matches it (dropped at the next change)
    comment: str = ""
    session: bool = False  # a dashboard's count rule: removed when that dashboard quits
    history: tuple[float, ...] = ()  # recent packet rates, oldest first


@dataclass(frozen=True)
class RulesData:
    rules: tuple[RuleRecord, ...]
    enforcing: int  # allow/deny rules still alive: these stay when ebpftop exits
    attached: tuple[str, ...]  # "eth0 ingress", ...; pinned tcx links
    generation: int
    max_rules: int
    problem: str | None = None


register_payload("rules", RulesData)


def rule_of(rec: RuleRecord) -> Rule | None:
    """The Rule a record's canonical text stands for (id set); None if it does not parse."""
    try:
        rule = parse_rule(rec.text)
    except RuleError:
        return None
    return None if rule is None else rule.with_(id=rec.id)
