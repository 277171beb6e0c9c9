"""Rule set operations (`RuleBook`): every change builds the complete new list and applies
it as one switch, so a refused or failed change leaves the enforced set as it was.

A rule keeps its id and counter slot for its whole life; expired rules stay listed,
marked, until the next change drops them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ebpftop.core.settings import Settings

from .. import kclock
from .compile import compile_rules
from .datapath import LAYOUT, SETS, Datapath, DatapathError, up_interfaces
from .layout import MAX_SLOTS
from .spec import Rule
from .state import SetState, StateDir


class RuleNotFound(ValueError):
    pass


def mono_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class Current:
    rules: list[Rule]
    gen: int
    next_id: int
    problem: str | None = None  # metadata and kernel disagree: say so, change nothing but flush


@dataclass(frozen=True)
class Applied:
    before: list[Rule]
    after: list[Rule]
    attached: list[str]
    removed: list[str]  # pins/links removed when the set became empty

    def summary(self) -> str:
        n = len(self.after)
        text = (
            f"{n} rule{'s' if n != 1 else ''} enforced" if n else "no rules: the rules program was detached"
        )
        if self.attached:
            text += "; attached to " + ", ".join(self.attached)
        return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _admitted(cur: Current, new: list[Rule], author: str) -> tuple[list[Rule], int]:
    """The rules of `new` that stay, new ones (id 0) given an id, a counter slot, the
    author and creation time; and the next free id."""
    now = time.time()
    old_slots = {r.slot for r in cur.rules}
    next_id = cur.next_id
    taken: set[int] = set()
    free = (s for s in range(MAX_SLOTS) if s not in old_slots)
    out = []
    for r in new:
        if r.session and r.action == "count" and not _alive(r.session):
            continue  # a session-scoped count rule whose dashboard is gone
        if r.expires is not None and r.expires <= now and r.id:
            continue  # expired: the kernel stopped matching it; clean it out now
        if not r.id:
            r = r.with_(
                id=next_id,
                author=r.author or author,
                created=now,
                expires=(now + r.ttl) if r.ttl else None,
            )
            next_id += 1
        if r.slot < 0 or r.slot in taken:
            r = r.with_(slot=next(s for s in free if s not in taken))
        taken.add(r.slot)
        out.append(r)
    return out, next_id


Progress = Callable[[str], None]  # told each step of a change as it starts (from the change's thread)


def _quiet(_step: str) -> None:
    pass


class RuleBook:
    def __init__(self, pin_dir: str, state_dir: str, ifaces: tuple[str, ...] = ()) -> None:
        self.dp = Datapath(pin_dir)
        self.state = StateDir(state_dir)
        self.ifaces = tuple(ifaces)
        self.progress: Progress = _quiet

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleBook:
        return cls(settings.rules_pin_dir, settings.rules_state_dir, settings.rules_ifaces)

    def close(self) -> None:
        self.dp.close()

    # --- reading ---------------------------------------------------------------------

    def read(self) -> Current:
        if not self.dp.loaded():
            return Current([], 0, 1)
        layout = self.dp.layout()
        if layout != LAYOUT:
            older = "an older" if layout < LAYOUT else "a newer"
            return Current(
                [],
                0,
                1,
                problem=(
                    f"the rules pinned under {self.dp.pin_dir} were written by {older} ebpftop "
                    f"(map layout {layout}; this one reads layout {LAYOUT}), so they are neither "
                    "listed nor changed here; they keep enforcing; "
                    "`ebpftop rules flush` or `ebpftop cleanup` removes them"
                ),
            )
        active = self.dp.active()
        gen, nrules, _ = self.dp.meta(active)
        meta = self.state.read(SETS[active])
        if meta is None and nrules == 0:
            return Current([], gen, 1)  # loaded, never filled (a first change that failed)
        if meta is None or meta.gen != gen or len(meta.rules) != nrules:
            why = "missing" if meta is None else f"generation {meta.gen}, kernel {gen}"
            return Current(
                [],
                gen,
                (meta.next_id if meta else 1),
                problem=f"the kernel enforces {nrules} rules of set {SETS[active]} (generation {gen}) but "
                f"their metadata ({self.state.file(SETS[active])}) is {why}; "
                "`ebpftop rules flush` or `ebpftop cleanup` resets it",
            )
        return Current(meta.rules, gen, meta.next_id)

    def read_counted(self) -> tuple[Current, dict[int, tuple[int, int, float | None]]]:
        """The enforced rules, and rule id -> (packets, bytes, last hit as wall-clock
        seconds or None). Read under the state lock: a change moves counts between sets."""
        with self.state.lock(shared=True):
            cur = self.read()
            if not cur.rules or cur.problem or not self.dp.loaded():
                return cur, {}
            raw = self.dp.rule_counters([r.slot for r in cur.rules])
        now_wall, now_mono = time.time(), mono_ns()
        out = {}
        for r in cur.rules:
            p, b, last = raw.get(r.slot, (0, 0, 0))
            out[r.id] = (p, b, (now_wall - (now_mono - kclock.mono_of(last)) / 1e9) if last else None)
        return cur, out

    # --- changing --------------------------------------------------------------------

    def apply(self, change: Callable[[list[Rule]], list[Rule]], author: str = "") -> Applied:
        """Apply `change(current rules) -> new rules` as one switch.

        New rules (id 0) get an id, a counter slot, the author and creation time."""
        self.progress("waiting for the rules lock")
        with self.state.lock():
            self.dp.close()  # pins may have been replaced since our fds were opened
            cur = self.read()
            new = change(list(cur.rules))
            if cur.problem and new:
                raise DatapathError(0, cur.problem)
            out, next_id = _admitted(cur, new, author)
            compile_rules(out)  # refuse now (limits, unknown interface), before anything is loaded
            if any(r.ttl or r.expires is not None for r in out):
                kclock.calibration()  # expiries need the kernel clock: fail here, before attaching
            if not out:
                self.progress("detaching the rules program and removing its pins")
                removed = self.dp.remove() + self.state.remove()
                return Applied(cur.rules, [], [], removed)
            return self._switch(cur, out, next_id)

    def _switch(self, cur: Current, out: list[Rule], next_id: int) -> Applied:
        """Load and attach the program, write `out` into the shadow set, flip to it."""
        old_slots = {r.slot for r in cur.rules}
        targets = self.targets(out)
        if not self.dp.loaded():
            self.progress(
                "pinning the rules program compiled in advance"
                if self.dp.is_warm()
                else "compiling and verifying the rules program (no rules were loaded: 5-8 s, once)"
            )
        self.dp.load()  # the first load compiles for seconds: TTLs start after it
        self.progress(f"attaching to {', '.join(targets)}" if targets else "attaching")
        attached = self.dp.attach(targets)
        now, mono = time.time(), mono_ns()
        fresh = {r.id for r in out if r.id >= cur.next_id}
        out = [
            r.with_(created=now, expires=(now + r.ttl) if r.ttl else None) if r.id in fresh else r
            for r in out
        ]
        compiled = compile_rules(
            out,
            expires=lambda r: (
                0 if r.expires is None else max(1, kclock.jiffies_at(mono + int((r.expires - now) * 1e9)))
            ),
        )
        active = self.dp.active()
        shadow = 1 - active
        # The shadow set's counts (if a change stopped after its switch) go into base
        # first; a new rule's slot starts from zero.
        self.progress("writing the new rule set and switching to it")
        self.dp.fold(shadow, reset={r.slot for r in out if r.slot not in old_slots})
        gen = cur.gen + 1
        self.state.write(SETS[shadow], SetState(gen, next_id, out))
        self.dp.write_set(shadow, compiled, gen)
        self.dp.flip(shadow)
        self.dp.fold(active)  # the old set's counts, once no program still runs on it
        return Applied(cur.rules, out, attached, [])

    def attached_ifaces(self) -> list[str]:
        """The interfaces the program is attached to now (whose device is still there)."""
        return list(dict.fromkeys(lp.iface for lp in self.dp.links() if lp.ifindex))

    def targets(self, rules: list[Rule]) -> list[str]:
        """The interfaces the program is attached to for `rules` (besides those it is on)."""
        named = [r.match.iface for r in rules if r.match.iface]
        wanted = list(dict.fromkeys(named))
        if any(r.match.iface is None for r in rules):
            default = list(self.ifaces) or [i for i in up_interfaces() if i != "lo"]
            wanted += [i for i in default if i not in wanted]
        return wanted

    def add(self, rule: Rule, author: str, position: int | None = None) -> Applied:
        def change(rules: list[Rule]) -> list[Rule]:
            rules.insert(len(rules) if position is None else max(0, position), rule)
            return rules

        return self.apply(change, author)

    def delete(self, ids: list[int], author: str = "") -> Applied:
        def change(rules: list[Rule]) -> list[Rule]:
            missing = set(ids) - {r.id for r in rules}
            if missing:
                raise RuleNotFound(
                    f"no rule with id {', '.join(map(str, sorted(missing)))}; nothing was changed"
                )
            return [r for r in rules if r.id not in ids]

        return self.apply(change, author)

    def set_action(self, rule_id: int, action: str, author: str = "") -> Applied:
        def change(rules: list[Rule]) -> list[Rule]:
            if not any(r.id == rule_id for r in rules):
                raise RuleNotFound(f"no rule with id {rule_id}; nothing was changed")
            # A session's count rule that starts enforcing is no longer the session's.
            keep = action == "count"
            return [
                r.with_(action=action, session=r.session if keep else 0) if r.id == rule_id else r
                for r in rules
            ]

        return self.apply(change, author)

    def move(self, rule_id: int, position: int, author: str = "") -> Applied:
        """Reorder: the rule goes to `position` (0 = highest priority); id and counters stay."""

        def change(rules: list[Rule]) -> list[Rule]:
            rule = next((r for r in rules if r.id == rule_id), None)
            if rule is None:
                raise RuleNotFound(f"no rule with id {rule_id}; nothing was changed")
            rules.remove(rule)
            rules.insert(max(0, position), rule)
            return rules

        return self.apply(change, author)

    def replace(self, rules: list[Rule], author: str) -> Applied:
        """Load a file: the new list replaces everything; a rule identical to a current one
        (same action and match) keeps its id and counters."""

        def change(cur: list[Rule]) -> list[Rule]:
            pool = list(cur)
            out = []
            for r in rules:
                twin = next((c for c in pool if c.same_match(r)), None)
                if twin is not None:
                    pool.remove(twin)
                    r = twin.with_(
                        ttl=r.ttl or twin.ttl,
                        comment=r.comment or twin.comment,
                        expires=twin.expires if not r.ttl else None,
                        id=twin.id if not r.ttl else 0,
                        slot=twin.slot,
                    )
                out.append(r)
            return out

        return self.apply(change, author)

    def flush(self, author: str = "") -> Applied:
        return self.apply(lambda rules: [], author)

    def end_session(self, pid: int) -> Applied | None:
        """Drop the count rules a dashboard session added (its enforcing rules stay)."""
        if not any(r.session == pid and r.action == "count" for r in self.read().rules):
            return None
        return self.apply(lambda rules: [r for r in rules if not (r.session == pid and r.action == "count")])
