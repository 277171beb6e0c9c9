"""`ebpftop cleanup` for rules: the pinned rules program, its links, maps and metadata.

Enforcing rules outlive ebpftop on purpose, so nothing else removes them; cleanup does,
and lists each (rule count first, so the operator sees what stops being enforced).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .ruleset import RuleBook


@dataclass(frozen=True)
class Item:
    kind: str  # "rules" | "tcx link" | "pin" | "file"
    what: str
    action: str  # "removed" | "would remove" | "failed: ..."


def sweep(pin_dir: str, state_dir: str, *, dry_run: bool = False) -> list[Item]:
    book = RuleBook(pin_dir, state_dir)
    try:
        if not os.path.isdir(pin_dir):
            # metadata without pins (after a reboot, say): nothing enforces it any more
            stale = [p for p in (book.state.file("a"), book.state.file("b")) if os.path.exists(p)]
            if stale and not dry_run:
                book.state.remove()
            return [Item("file", p, "would remove" if dry_run else "removed") for p in stale]
        cur = book.read()
        out = []
        verb = "would remove" if dry_run else "removed"
        if cur.rules or cur.problem:
            what = f"{len(cur.rules)} rules under {pin_dir} (enforcement stops)"
            out.append(
                Item("rules", what if not cur.problem else f"rule set under {pin_dir}: {cur.problem}", verb)
            )
        if dry_run:
            for lp in book.dp.links():
                out.append(
                    Item(
                        "tcx link",
                        f"{lp.iface} {'ingress' if lp.ingress else 'egress'} link {lp.link_id} ({lp.path})",
                        verb,
                    )
                )
            return out
        try:
            gone = book.dp.remove() + book.state.remove()
        except OSError as exc:
            return [*out, Item("pin", pin_dir, f"failed: {exc.strerror or exc}")]
        for g in gone:
            kind, _, what = g.partition(" ")
            out.append(
                Item(
                    {"link": "tcx link", "pin": "pin"}.get(kind, "file"),
                    what if kind in ("link", "pin") else g,
                    verb,
                )
            )
        return out
    finally:
        book.close()
