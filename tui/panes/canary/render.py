"""Text of the Canary pane: verdict badges, the metric table, drift test, staleness,
warnings, rollout state with a weight bar, and the series the charts and sparklines
are drawn from.

Pure functions of payloads (CanaryData, RolloutData) and the store's history, so they
can be tested without a screen. A number that could not be measured is written
"no data", never 0. Every string from a payload (service names, label values,
warnings, errors, revisions, controller messages) goes through `clean`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from textual.content import Content

from ...text import clean
from .. import fmt
from ..fmt import Part

NO_DATA = "no data"
SPARK = "▁▂▃▄▅▆▇█"
CHART_MINUTES = 10.0  # how far back the charts and sparklines look

VERDICT_BADGES: dict[str, tuple[str, str]] = {
    # The word carries the meaning; colour only repeats it (NO_COLOR loses nothing).
    "pass": ("✔ PASS", "bold $success"),
    "warn": ("▲ WARN", "bold $warning"),
    "fail": ("✖ FAIL", "bold $error"),
    "no_data": ("○ NO DATA", "bold $text-muted"),
}


def verdict_value(v: Any) -> str:
    return str(getattr(v, "value", v))


def verdict_badge(v: Any) -> tuple[str, str]:
    return VERDICT_BADGES.get(verdict_value(v), (f"? {clean(v, 20).upper()}", "bold"))


def _finite(x: float | None) -> float | None:
    """The value, or None when missing (None, NaN, infinite)."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def seconds(x: float | None) -> str:
    v = _finite(x)
    if v is None:
        return NO_DATA
    return f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.3g} s"


def ratio(x: float | None) -> str:
    v = _finite(x)
    return NO_DATA if v is None else f"{v * 100:.3g}%"


def times(x: float | None) -> str:
    v = _finite(x)
    return NO_DATA if v is None else f"{v:.3g}x"


def per_second(x: float | None) -> str:
    v = _finite(x)
    return NO_DATA if v is None else f"{v:.3g}/s"


def plain(x: float | None) -> str:
    v = _finite(x)
    return NO_DATA if v is None else f"{v:.3g}"


def value_in(unit: str, x: float | None) -> str:
    return {"s": seconds, "ratio": ratio, "x": times}.get(unit, plain)(x)


def sparkline(values: list[float | None], width: int) -> str:
    """Unicode blocks scaled to the values shown; a gap (space) where there was no data."""
    if width <= 0:
        return ""
    shown = [_finite(v) for v in values[-width:]]
    known = [v for v in shown if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo
    out: list[str] = []
    for v in shown:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK[0] if hi == 0 else SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def weight_bar(stable: float | None, canary: float | None, width: int) -> str:
    """`█` for stable's share, `▒` for the canary's; `?` when a weight is unknown."""
    if width <= 0:
        return ""
    st, ca = _finite(stable), _finite(canary)
    if st is None:
        if ca is None:
            return "?" * width
        st = 100.0 - ca
    s = float(st)
    c = 100.0 - s if ca is None else float(ca)
    total = s + c
    if total <= 0:
        return "·" * width
    n_canary = round(width * c / total)
    if c > 0 and n_canary == 0:
        n_canary = 1  # a canary taking any traffic stays visible
    return "█" * (width - n_canary) + "▒" * n_canary


# --- history -------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    t: float  # evaluation time (wall clock)
    canary_p99: float | None
    stable_p99: float | None
    canary_err: float | None
    stable_err: float | None
    p99_ratio: float | None


def series(history: Iterable[Any], service: str, minutes: float = CHART_MINUTES) -> list[Point]:
    """One point per evaluation of `service` from the store's canary history (oldest
    first). Stale samples repeat older numbers and are skipped; so are repeats of one
    evaluation."""
    points: dict[float, Point] = {}
    for snap in history:
        data = getattr(snap, "data", None)
        for svc in getattr(data, "services", ()) or ():
            if svc.name != service or svc.stale:
                continue
            t = svc.evaluated_at if svc.evaluated_at is not None else snap.time
            ratio_metric = next((m for m in svc.metrics if m.name == "p99_ratio"), None)
            points[t] = Point(
                t,
                svc.canary.p99_s,
                svc.stable.p99_s,
                svc.canary.error_ratio,
                svc.stable.error_ratio,
                ratio_metric.value if ratio_metric else None,
            )
    ordered = [points[t] for t in sorted(points)]
    if ordered:
        start = ordered[-1].t - minutes * 60
        ordered = [p for p in ordered if p.t >= start]
    return ordered


# --- the summary text ------------------------------------------------------------

COLS = (("metric", 11), ("canary", 9), ("stable", 9), ("threshold", 10), ("verdict", 9))


def _metric(svc: Any, name: str) -> Any:
    return next((m for m in svc.metrics if m.name == name), None)


def _verdict_cell(m: Any) -> tuple[str, str]:
    if m is None:
        return ("", "")
    v = verdict_value(m.verdict)
    label, style = verdict_badge(v)
    word = label.split(" ", 1)[1].lower()
    if v == "warn" and m.breaches:
        word = f"warn {m.breaches}"
    return (word, style)


def _row(cells: list[Part], trend: str = "") -> list[Part]:
    parts: list[Part] = []
    for (_, w), cell in zip(COLS, cells, strict=True):
        text, style = (cell, "") if isinstance(cell, str) else cell
        text = text[: w - 1]
        parts.append((text.ljust(w), style) if style else text.ljust(w))
    if trend:
        parts.append((trend, "$accent"))
    return parts


def history_parts(svc: Any, now: float) -> list[Part]:
    """Which evaluations behind the verdict were read from Prometheus history, or why
    history could not be read (then the verdict waits for live evaluations)."""
    parts: list[Part] = []
    at = tuple(getattr(svc, "history_at", ()) or ())
    if at:
        n = len(at)
        span = f"{fmt.age(now - at[0])} ago" + (f" to {fmt.age(now - at[-1])} ago" if n > 1 else "")
        parts += ["\n", (f"{n} evaluation{'s' * (n > 1)} from Prometheus history ({span})", "$text-muted")]
    note = getattr(svc, "history_note", "")
    if note:
        parts += ["\n", ("history not read: ", "$warning"), clean(note, 200)]
    return parts


def service_parts(svc: Any, hist: list[Point], now: float, width: int) -> list[Part]:
    """One service: badge and reason, staleness, the table, the drift test, warnings."""
    label, style = verdict_badge(svc.verdict)
    parts: list[Part] = [(label, style), "  ", (clean(svc.name, 40), "bold")]
    if svc.window:
        parts.append((f"  window {clean(svc.window, 10)}", "$text-muted"))
    if svc.stale:
        age = None if svc.evaluated_at is None else now - svc.evaluated_at
        parts += ["  ", (f"STALE: last good data {fmt.duration(age)} ago", "bold reverse $warning")]
    parts += ["\n", clean(svc.reason, 400)]
    if svc.variant_label:
        parts.append((f"  (variants by {clean(svc.variant_label, 30)})", "$text-muted"))
    parts += history_parts(svc, now)
    used = sum(w for _, w in COLS)
    spark_w = max(0, min(30, width - used))
    head = [(name.ljust(w), "$text-muted") for name, w in COLS]
    if spark_w >= 6:
        head.append((f"trend {int(CHART_MINUTES)}m"[:spark_w], "$text-muted"))
    parts += ["\n", *head]
    p99, err, pr = _metric(svc, "p99"), _metric(svc, "error_ratio"), _metric(svc, "p99_ratio")
    c, s = svc.canary, svc.stable

    def limit(m: Any, unit: str) -> str:
        return "" if m is None or m.threshold is None else "≤ " + value_in(unit, m.threshold)

    def trend(key: str) -> str:
        return sparkline([getattr(p, key) for p in hist], spark_w) if spark_w >= 6 else ""

    rows: list[tuple[list[Part], str]] = [
        (
            ["p99", seconds(c.p99_s), seconds(s.p99_s), limit(p99, "s"), _verdict_cell(p99)],
            trend("canary_p99"),
        ),
        (
            [
                "5xx ratio",
                ratio(c.error_ratio),
                ratio(s.error_ratio),
                limit(err, "ratio"),
                _verdict_cell(err),
            ],
            trend("canary_err"),
        ),
        (["throughput", per_second(c.rps), per_second(s.rps), "", ""], ""),
        (
            ["p99 ratio", times(pr.value if pr else None), "", limit(pr, "x"), _verdict_cell(pr)],
            trend("p99_ratio"),
        ),
    ]
    for cells, tr in rows:
        parts += ["\n", *_row(cells, tr)]
    parts += ["\n", *drift_parts(svc)]
    for w in svc.warnings:
        parts += ["\n", ("Prometheus warning: ", "bold $warning"), clean(w, 300)]
    for e in svc.errors:
        parts += ["\n", ("query failed: ", "bold $error"), clean(e, 300)]
    return parts


def drift_parts(svc: Any) -> list[Part]:
    d = svc.drift
    m = _metric(svc, "drift")
    cell = _verdict_cell(m)
    head: list[Part] = [("drift ", "bold"), (clean(d.test or "distribution test", 60), "")]
    if d.statistic is None or d.p_value is None:
        why = d.note or (m.reason if m else "") or "not possible"
        return [*head, ": ", (NO_DATA, "$text-muted"), f" ({clean(why, 200)})"]
    stats = (
        f": χ²={d.statistic:.4g}"
        + (f" df={d.dof}" if d.dof is not None else "")
        + f" p={d.p_value:.3g} {clean(d.effect_name, 20)}={plain(d.effect_size)} ({d.bins} bins)"
    )
    return [*head, stats, "  ", cell] if cell[0] else [*head, stats]


def _track(track: str, revision: str | None) -> str:
    """`stable v1.0.0`; the track alone when the revision is named after it (HAProxy
    servers called stable and canary), not `stable stable`."""
    shown = clean(revision or "?", 24)
    return track if shown == track else f"{track} {shown}"


def rollout_parts(state: Any, width: int, rollback_key: bool = False) -> list[Part]:
    """Revisions, a weight bar and the phase of one service's rollout."""
    parts: list[Part] = [("rollout ", "bold"), clean(state.controller, 20)]
    if state.phase:
        parts += ["  phase ", (clean(state.phase, 40), "bold")]
    if state.step is not None:
        parts.append(f"  step {state.step}" + (f"/{state.steps}" if state.steps else ""))
    stable = f"{_track('stable', state.stable_revision)} {fmt.percent(state.stable_weight)}"
    canary = f"{fmt.percent(state.canary_weight)} {_track('canary', state.canary_revision)}"
    bar_w = max(4, min(30, width - len(stable) - len(canary) - 2))
    parts += [
        "\n",
        stable,
        " ",
        (weight_bar(state.stable_weight, state.canary_weight, bar_w), "$primary"),
        " ",
        canary,
    ]
    if state.message:
        parts += ["\n", ("controller: ", "$text-muted"), clean(state.message, 200)]
    if not state.can_rollback:
        parts += ["\n", ("rollback disabled: ", "bold $warning"), clean(state.rollback_reason, 200)]
    elif rollback_key:
        parts += [
            "\n",
            ("R", "bold $accent"),
            (": roll back, all traffic to stable (type the service name to confirm)", "$text-muted"),
        ]
    undo = str(getattr(state, "undo", "") or "")
    if rollback_key and undo:
        # The rollback ebpftop remembers: U sets back exactly what it changed.
        parts += ["\n", ("U", "bold $accent"), (f": undo, set back {clean(undo, 120)}", "$text-muted")]
    return parts


def summary(
    canary: Any,
    rollout: Any,
    history: Iterable[Any],
    now: float,
    width: int,
    auto_line: str = "",
    *,
    rollback_key: bool = False,
) -> Content:
    """The whole text part of the pane."""
    history = list(history)
    states = {s.service: s for s in getattr(rollout, "services", ()) or ()}
    parts: list[Part] = []
    services = list(getattr(canary, "services", ()) or ())
    if not services and not states:
        parts.append(("No canary evaluation to show (the line above says why).", "$text-muted"))
    for i, svc in enumerate(services):
        if i:
            parts += ["\n", ("─" * max(1, width), "$text-muted"), "\n"]
        parts += service_parts(svc, series(history, svc.name), now, width)
        st = states.pop(svc.name, None)
        if st is not None:
            parts += ["\n", *rollout_parts(st, width, rollback_key)]
    for st in states.values():  # a rollout with no canary evaluation of the same name
        if parts:
            parts.append("\n")
        parts += [
            (clean(st.service, 40), "bold"),
            ("  (no canary evaluation of this service)", "$text-muted"),
            "\n",
            *rollout_parts(st, width, rollback_key),
        ]
    if auto_line:
        parts += ["\n", (auto_line, "bold reverse $error" if "cancel" in auto_line else "bold $warning")]
    return Content.assemble(*parts)
