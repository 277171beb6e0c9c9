"""The "rules" source: every enforced rule with its counters, rates, last hit and a
small rate history, read from the pinned maps (no compile, no attachment of its own).

Reading needs root (bpffs pins). With no rules pinned the source is healthy and empty:
"no rules" is data, not an error.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time

from ebpftop.core.collector import Collector, SourceUnavailable
from ebpftop.core.settings import Settings

from .layout import MAX_RULES
from .model import RuleRecord, RulesData
from .ruleset import RuleBook
from .spec import format_rule

HISTORY = 30


def rules_data(
    settings: Settings, book: RuleBook | None = None, rates: RateKeeper | None = None
) -> RulesData:
    """One reading of the enforced rules. `rates` (a RateKeeper) adds rates and history."""
    book = book or RuleBook.from_settings(settings)
    try:
        cur, counters = book.read_counted()
        attached = tuple(
            f"{lp.iface} {'ingress' if lp.ingress else 'egress'}" + ("" if lp.ifindex else " (device gone)")
            for lp in book.dp.links()
        )
    finally:
        book.close()  # fds are reopened each time: another process may have replaced the pins
    now = time.time()
    out = []
    for pos, r in enumerate(cur.rules):
        packets, nbytes, last = counters.get(r.id, (0, 0, None))
        pps = bps = None
        hist: tuple[float, ...] = ()
        if rates is not None:
            pps, bps, hist = rates.update(r.id, now, packets, nbytes)
        out.append(
            RuleRecord(
                id=r.id,
                position=pos,
                action=r.action,
                text=format_rule(r),
                packets=packets,
                bytes=nbytes,
                pps=pps,
                bps=bps,
                last_hit=last,
                author=r.author,
                created=r.created,
                expires=r.expires,
                expired=r.expires is not None and r.expires <= now,
                comment=r.comment,
                session=bool(r.session),
                history=hist,
            )
        )
    if rates is not None:
        rates.forget({r.id for r in cur.rules})
    enforcing = sum(1 for r in out if r.action != "count" and not r.expired)
    return RulesData(tuple(out), enforcing, attached, cur.gen, MAX_RULES, cur.problem)


class RateKeeper:
    def __init__(self, history: int = HISTORY) -> None:
        self._last: dict[int, tuple[float, int, int]] = {}
        self._hist: dict[int, collections.deque[float]] = {}
        self._n = history

    def update(
        self, rule_id: int, now: float, packets: int, nbytes: int
    ) -> tuple[float | None, float | None, tuple[float, ...]]:
        prev = self._last.get(rule_id)
        self._last[rule_id] = (now, packets, nbytes)
        hist = self._hist.setdefault(rule_id, collections.deque(maxlen=self._n))
        if prev is None or now <= prev[0] or packets < prev[1]:
            return None, None, tuple(hist)
        dt = now - prev[0]
        pps, bps = (packets - prev[1]) / dt, (nbytes - prev[2]) / dt
        hist.append(pps)
        return pps, bps, tuple(hist)

    def forget(self, alive: set[int]) -> None:
        for rid in set(self._last) - alive:
            self._last.pop(rid, None)
            self._hist.pop(rid, None)


class RulesCollector(Collector):
    name = "rules"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.refresh
        self._book: RuleBook | None = None
        self._rates = RateKeeper()

    async def start(self) -> None:
        if os.geteuid() != 0:
            raise SourceUnavailable("reading the pinned rule maps needs root", "run `sudo ebpftop`")
        self._book = RuleBook.from_settings(self.settings)

    async def collect(self) -> RulesData:
        return await asyncio.to_thread(rules_data, self.settings, self._book, self._rates)

    def degraded_reason(self, payload: RulesData) -> str:
        return payload.problem or ""

    async def close(self) -> None:
        # This session's count rules are removed by an action the cli registers on the
        # runtime (actions.rules.end_session), through its gate: a source never acts.
        book, self._book = self._book, None
        if book is not None:
            book.close()
