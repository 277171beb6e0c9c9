"""The fleet view's filter: `service:checkout namespace:shop pod:web-*`, as PromQL matchers.

It narrows the flow columns (traffic, retransmits, connect latency and failures: the
agent labels those by local owner) and the failing canaries (by service); rule hits
and the agent's health are the node's, whatever the filter. A `*` matches any run of
characters; everything else matches literally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYS = ("service", "namespace", "pod")
MAX_VALUE = 128
HELP = "terms KEY:VALUE with KEY one of service, namespace, pod (VALUE may use *), e.g. service:checkout"


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class FleetFilter:
    terms: tuple[tuple[str, str], ...] = ()  # (key, value), as typed

    @property
    def text(self) -> str:
        return " ".join(f"{k}:{v}" for k, v in self.terms)

    def matchers(self, *, only: tuple[str, ...] = KEYS) -> str:
        """`{service="checkout",pod=~"web-.*"}` of the terms whose key is in `only` ("" none)."""
        parts = [_matcher(k, v) for k, v in self.terms if k in only]
        return "{" + ",".join(parts) + "}" if parts else ""

    def inner(self, *, only: tuple[str, ...] = KEYS) -> str:
        """The matchers without braces, to add to a selector that has its own."""
        return self.matchers(only=only)[1:-1]


def parse(text: str) -> FleetFilter:
    """`"service:checkout pod:web-*"` -> FleetFilter. Raises FilterError naming the bad term."""
    terms: list[tuple[str, str]] = []
    for term in text.split():
        key, sep, value = term.partition(":")
        if not sep or key not in KEYS:
            raise FilterError(f"{term!r} is not a filter term: {HELP}")
        if not value:
            raise FilterError(f"{term!r} has no value: {HELP}")
        if len(value) > MAX_VALUE or any(not c.isprintable() for c in value):
            raise FilterError(f"{key}: the value must be printable and at most {MAX_VALUE} characters")
        if any(k == key for k, _ in terms):
            raise FilterError(f"{key} is given twice: one value per key")
        terms.append((key, value))
    return FleetFilter(tuple(terms))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _matcher(key: str, value: str) -> str:
    if "*" not in value:
        return f"{key}={_quoted(value)}"
    pattern = ".*".join(re.escape(part) for part in value.split("*"))
    return f"{key}=~{_quoted(pattern)}"
