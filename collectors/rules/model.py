"""The rules payload: what `ebpftop snapshot --json`, `rules list --json` and the Rules
pane carry, and its alarm. Times are wall-clock seconds; rates per second; None when not
known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ebpftop.core.alarms import Alarm, register_alarms
from ebpftop.core.model import Snapshot, register_payload

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


def rules_alarms(latest: Snapshot, history: Sequence[Snapshot]) -> list[Alarm]:
    """The kernel's rule maps and the rule book disagree: what is enforced is not what
    the Rules pane lists."""
    data = latest.data
    if isinstance(data, RulesData) and data.problem:
        text = "rules: kernel and metadata disagree"
        return [Alarm(latest.source, "error", text, "rules_disagree", {"problem": data.problem})]
    return []


register_alarms("rules", rules_alarms)
