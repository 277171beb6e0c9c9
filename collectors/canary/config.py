"""Canary services: which metrics to query, how to tell canary from stable, thresholds.

A service is a set of PromQL templates (`$variant`, `$window`; `$` because PromQL
already uses braces), checked here without a server so a broken one is reported at
start. Defaults and the file format: collectors/canary/README.md.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ebpftop.core.durations import DURATION, duration_seconds

from .verdict import Thresholds

P99 = "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{$variant}[$window])))"
ERROR_RATIO = (
    # `or vector(0)`: no 5xx series at all means zero errors, while no requests at all
    # still leaves the division empty, i.e. "no data".
    '(sum(rate(http_requests_total{$variant,code=~"5.."}[$window])) or vector(0))'
    " / sum(rate(http_requests_total{$variant}[$window]))"
)
THROUGHPUT = "sum(rate(http_requests_total{$variant}[$window]))"
BUCKETS = "sum by (le) (increase(http_request_duration_seconds_bucket{$variant}[$window]))"
EXEMPLARS = "http_request_duration_seconds_bucket{$variant}"

TEMPLATES = ("p99", "error_ratio", "throughput", "buckets", "exemplars")
PLACEHOLDERS = ("variant", "window")
AUTO_VARIANT_LABELS = ("version", "track")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?\Z")
_PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")


class CanaryConfigError(ValueError):
    """A service definition is wrong; the message names the service and the key."""


@dataclass(frozen=True)
class ServiceConfig:
    name: str = "default"
    variant_label: str = ""
    """Label that tells canary from stable; empty tries `version`, then `track`."""
    canary: str = "canary"
    """Value of the variant label on the canary."""
    stable: str = "stable"
    """Value of the variant label on stable."""
    selector: str = ""
    """Extra label matchers for this service, e.g. job="checkout"."""
    window: str = "1m"
    """Range of rate()/increase(): the evaluation window."""
    trace_label: str = "trace_id"
    """Exemplar label carrying the trace id."""
    p99: str = P99
    error_ratio: str = ERROR_RATIO
    throughput: str = THROUGHPUT
    buckets: str = BUCKETS
    exemplars: str = EXEMPLARS
    thresholds: Thresholds = field(default_factory=Thresholds)

    def templates(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in TEMPLATES}

    def variant_labels(self) -> tuple[str, ...]:
        return (self.variant_label,) if self.variant_label else AUTO_VARIANT_LABELS

    def matchers(self, variant: str, label: str) -> str:
        """What `$variant` becomes for `variant` ("canary"/"stable") under `label`."""
        value = self.canary if variant == "canary" else self.stable
        own = f'{label}="{escape(value)}"'
        extra = self.selector.strip().rstrip(",").strip()
        return f"{own},{extra}" if extra else own

    def render(self, template: str, variant: str, label: str) -> str:
        return fill(getattr(self, template), variant=self.matchers(variant, label), window=self.window)

    @property
    def window_s(self) -> float:
        return duration_seconds(self.window)


def escape(value: str) -> str:
    """A label value inside PromQL double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fill(template: str, **values: str) -> str:
    """Substitute $name / ${name} outside string literals; leaves strings untouched."""
    out: list[str] = []
    for kind, chunk in _split_strings(template):
        if kind == "code":
            chunk = _PLACEHOLDER.sub(lambda m: values[m.group(1) or m.group(2)], chunk)
        out.append(chunk)
    return "".join(out)


def _split_strings(text: str) -> list[tuple[str, str]]:
    """Split into ("code", ...), ("string", ...) and ("comment", ...) pieces.

    An unterminated string literal becomes ("open", ...).
    """
    parts: list[tuple[str, str]] = []
    i = start = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            if start < i:
                parts.append(("code", text[start:i]))
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" and ch != "`" else 1
            if j >= n:
                parts.append(("open", text[i:]))
                return parts
            parts.append(("string", text[i : j + 1]))
            i = start = j + 1
            continue
        if ch == "#":
            if start < i:
                parts.append(("code", text[start:i]))
            j = text.find("\n", i)
            j = n if j < 0 else j
            parts.append(("comment", text[i:j]))
            i = start = j
            continue
        i += 1
    if start < n:
        parts.append(("code", text[start:]))
    return parts


_CLOSE = {")": "(", "]": "[", "}": "{"}


def check_template(template: str) -> str | None:
    """Why `template` cannot be a PromQL template, or None. Column numbers are 1-based."""
    if not isinstance(template, str) or not template.strip():
        return "is empty"
    stack: list[tuple[str, int]] = []
    seen: set[str] = set()
    pos = 0
    for kind, chunk in _split_strings(template):
        if kind == "open":
            return f"unterminated string starting at column {pos + 1}"
        if kind == "code":
            for m in _PLACEHOLDER.finditer(chunk):
                name = m.group(1) or m.group(2)
                if name not in PLACEHOLDERS:
                    known = ", ".join("$" + p for p in PLACEHOLDERS)
                    return f"unknown placeholder ${name} at column {pos + m.start() + 1} (known: {known})"
                seen.add(name)
            for k, ch in enumerate(chunk):
                if ch in "([{":
                    stack.append((ch, pos + k + 1))
                elif ch in _CLOSE:
                    if not stack or stack[-1][0] != _CLOSE[ch]:
                        return f"unexpected '{ch}' at column {pos + k + 1}"
                    stack.pop()
        pos += len(chunk)
    if stack:
        ch, col = stack[-1]
        return f"unclosed '{ch}' at column {col}"
    if "variant" not in seen:
        return "names no variant: put $variant inside the selector, e.g. metric{$variant}"
    return None


def check_selector(selector: str) -> str | None:
    if not _SELECTOR.match(selector):
        return 'must be label matchers like job="checkout",env=~"prod.*"'
    return None


_KEYS = {f.name for f in fields(ServiceConfig)} - {"thresholds"}
_THRESHOLD_KEYS = {
    "p99_max": "p99_max_s",
    "error_ratio_max": "error_ratio_max",
    "p99_ratio_max": "p99_ratio_max",
    "breaches_to_fail": "persist",
    "min_requests": "min_requests",
}
_QUERY_KEYS = {f"{t}_query": t for t in TEMPLATES}


def _check_threshold(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    if key == "breaches_to_fail":
        return (
            None if isinstance(value, int) and 1 <= value <= 1000 else "must be a whole number from 1 to 1000"
        )
    if key == "min_requests":
        return None if value >= 0 else "must be >= 0"
    return None if value > 0 and value == value and value != float("inf") else "must be a finite number > 0"


def parse_service(
    table: Mapping[str, Any], where: str, defaults: Thresholds, window: str = "1m"
) -> ServiceConfig:
    """One service table -> ServiceConfig. `where` prefixes every message; `defaults`
    and `window` apply where the table does not say."""
    if not isinstance(table, Mapping):
        raise CanaryConfigError(f"{where}: a service must be a table, got {type(table).__name__}")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CanaryConfigError(f'{where}: service needs a name = "..."')
    here = f"{where}: canary service {name!r}"
    kwargs: dict[str, Any] = {"name": name, "window": window}
    thresholds: dict[str, Any] = {}
    for key, value in table.items():
        if key == "name":
            continue
        if key in _THRESHOLD_KEYS:
            reason = _check_threshold(key, value)
            if reason:
                raise CanaryConfigError(f"{here}, {key} {reason}")
            thresholds[_THRESHOLD_KEYS[key]] = value
            continue
        attr = _QUERY_KEYS.get(key, key)
        if attr not in _KEYS:
            known = ", ".join(sorted([*(_KEYS - set(TEMPLATES)), *_QUERY_KEYS, *_THRESHOLD_KEYS]))
            raise CanaryConfigError(f"{here}: unknown key {key!r} (known: {known})")
        if not isinstance(value, str):
            raise CanaryConfigError(f"{here}, {key} must be a string, got {value!r}")
        kwargs[attr] = value
    svc = ServiceConfig(**kwargs, thresholds=replace(defaults, **thresholds))
    validate(svc, where)
    return svc


def validate(svc: ServiceConfig, where: str = "") -> None:
    """Raise CanaryConfigError naming the service and the first thing wrong with it."""
    here = f"{where + ': ' if where else ''}canary service {svc.name!r}"
    if svc.variant_label and not _NAME.match(svc.variant_label):
        raise CanaryConfigError(f"{here}, variant_label {svc.variant_label!r} is not a label name")
    if not _NAME.match(svc.trace_label):
        raise CanaryConfigError(f"{here}, trace_label {svc.trace_label!r} is not a label name")
    if svc.canary == svc.stable:
        raise CanaryConfigError(f"{here}: canary and stable are both {svc.canary!r}; they must differ")
    if not DURATION.match(svc.window) or duration_seconds(svc.window) <= 0:
        raise CanaryConfigError(f"{here}, window {svc.window!r} must be a Prometheus duration like 1m or 30s")
    reason = check_selector(svc.selector)
    if reason:
        raise CanaryConfigError(f"{here}, selector {svc.selector!r} {reason}")
    for name, template in svc.templates().items():
        reason = check_template(template)
        if reason:
            raise CanaryConfigError(f"{here}, template {name} ({template!r}) {reason}")


def parse_services(
    tables: Iterable[Mapping[str, Any]], where: str, defaults: Thresholds, window: str = "1m"
) -> tuple[ServiceConfig, ...]:
    out: list[ServiceConfig] = []
    names: set[str] = set()
    for i, table in enumerate(tables, 1):
        svc = parse_service(table, f"{where} [[service]] #{i}", defaults, window)
        if svc.name in names:
            raise CanaryConfigError(f"{where} [[service]] #{i}: service {svc.name!r} is defined twice")
        names.add(svc.name)
        out.append(svc)
    return tuple(out)


def load_services_file(
    path: str | Path, defaults: Thresholds, window: str = "1m"
) -> tuple[ServiceConfig, ...]:
    """`[[service]]` tables from a TOML file; every error names the file."""
    where = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CanaryConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryConfigError(f"{where}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CanaryConfigError(f"{where}: invalid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"service"})
    if unknown:
        raise CanaryConfigError(f"{where}: unknown key {unknown[0]!r} (services are [[service]] tables)")
    tables = doc.get("service", [])
    if not isinstance(tables, list) or not tables:
        raise CanaryConfigError(f"{where}: no [[service]] tables")
    return parse_services(tables, where, defaults, window)
