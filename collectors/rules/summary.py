"""The enforced-rules summary the dashboard shows at start and asks about at quit:
allow/deny rules keep enforcing after ebpftop exits, so the operator is told which,
who added them, how old they are and when they expire."""

from __future__ import annotations

import time

from .model import RulesData
from .spec import format_duration


def enforced_lines(data: RulesData, now: float | None = None) -> list[str]:
    """One line per allow/deny rule still in force (count rules and expired ones are not)."""
    now = time.time() if now is None else now
    out = []
    for r in data.rules:
        if r.action == "count" or r.expired:
            continue
        age = format_duration(max(0.0, now - r.created))
        exp = "no expiry" if r.expires is None else f"expires in {format_duration(max(0.0, r.expires - now))}"
        out.append(f"#{r.id} {r.text}  (by {r.author or 'unknown'}, {age} ago, {exp})")
    return out


def quit_question(data: RulesData, now: float | None = None) -> str | None:
    """The keep/remove question at quit, or None when nothing stays enforced."""
    lines = enforced_lines(data, now)
    if not lines:
        return None
    head = f"{len(lines)} rule{'s' if len(lines) != 1 else ''} will keep enforcing after ebpftop exits:"
    return "\n".join([head, *lines, "Keep them enforced, or remove them?"])
