"""The header: the host at a glance, the app's mode marks, and what is wrong.

Three lines, in order of what the incident room needs: the title with its marks
(READ-ONLY, PAUSED, replay position), the host (CPU, load, memory, network), then what
is wrong (core/alarms.py: the data's alarms, then sources not OK, worst first), so a
problem shows without a keypress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.content import Content
from textual.geometry import Region
from textual.widget import Widget

from ebpftop.core.alarms import HEALTH_KINDS, Alarm, health_alarm, ordered
from ebpftop.core.model import Health, HealthState, HostData, Snapshot

from ..text import clean
from . import fmt
from .base import badge
from .fmt import Part


@dataclass(frozen=True)
class Marks:
    title: str = "ebpftop"
    read_only: bool = False
    paused: bool = False
    pending: int = 0  # samples that arrived while paused
    replay: str = ""  # replay status text, untrusted (built from a file)
    recording: str = ""  # "recording" / "stopped" / "failed", when --record is on
    recording_size: float = 0.0


def title_line(marks: Marks, host: HostData | None = None, width: int = 0) -> Content:
    """Title, host identity and mode marks; drops kernel, then uptime, to fit `width`.
    The marks (READ-ONLY, PAUSED, replay position) are never dropped."""
    tail: list[str | tuple[str, str]] = []
    if marks.read_only:
        tail += ["  ", (" READ-ONLY ", "bold reverse $accent")]
    if marks.paused:
        waiting = f" +{marks.pending}" if marks.pending else ""
        tail += ["  ", (f" PAUSED{waiting} ", "bold reverse $warning")]
    if marks.replay:
        tail += ["  ", (clean(marks.replay, 80), "bold $secondary")]
    if marks.recording == "recording":
        tail += ["  ", ("● REC", "bold $error"), f" {fmt.size(marks.recording_size)}"]
    elif marks.recording:
        tail += ["  ", (f" REC {clean(marks.recording, 20).upper()} ", "bold reverse $warning")]
    head: list[str | tuple[str, str]] = [(clean(marks.title, 60), "bold")]
    variants = [head + tail]
    if host is not None:
        name: list[Part] = ["  ", (clean(host.hostname, 40), "bold $accent")]
        kernel: list[Part] = [("  " + clean(host.kernel, 30), "$text-muted")]
        up: list[Part] = [f"  up {fmt.duration(host.uptime_s)}"]
        variants = [head + name + kernel + up + tail, head + name + up + tail, head + name + tail]
    for parts in variants:
        content = Content.assemble(*parts)
        if not width or content.cell_length <= width:
            return content
    return content


def host_line(data: HostData | None, width: int = 0) -> Content:
    """CPU, load, memory, network; the most compact variant that fits `width`."""
    if data is None:
        return Content.assemble(("host: waiting for the first sample", "$text-muted"))
    try:
        return _host_line(data, width)
    except Exception as exc:
        return Content.assemble(("host: sample not displayable: ", "$warning"), clean(exc, 120))


def _load(x: object) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else fmt.NO_DATA


def _host_line(data: HostData, width: int) -> Content:
    load = tuple(data.load or ())
    load1 = _load(load[0]) if load else fmt.NO_DATA
    load3 = " ".join(_load(x) for x in load) or fmt.NO_DATA
    cpu: list[Part] = [("CPU ", ""), (fmt.percent(data.cpu_percent), "bold"), (f"/{data.cpu_count}", "")]
    mem: list[Part] = [("  mem ", ""), (fmt.percent(data.mem_percent), "bold")]
    mem_detail = f" {fmt.size(data.mem_used)}/{fmt.size(data.mem_total)}"
    net = f"  net ↓{fmt.rate(data.net_rx_bps)} ↑{fmt.rate(data.net_tx_bps)}"
    variants = [
        [*cpu, f"  load {load3}", *mem, mem_detail, net],
        [*cpu, f"  load {load3}", *mem, net],
        [*cpu, f"  load {load1}", *mem, net],
    ]
    for parts in variants:
        content = Content.assemble(*parts)
        if not width or content.cell_length <= width:
            return content
    return content


ALARM_STYLE = {"error": "bold $error", "warning": "bold $warning"}


def problem_line(
    health: dict[str, Health], waiting: tuple[str, ...] = (), alarms: tuple[Alarm, ...] = ()
) -> Content:
    """What is wrong, in the order of core/alarms.py: alarms from the data first (a
    failing canary), then sources down or degraded, then sources off (not configured)."""
    shown = ordered([*alarms, *(health_alarm(name, h) for name, h in health.items())])
    parts: list[str | tuple[str, str]] = []
    bad: list[tuple[str, HealthState, str]] = []
    for alarm in shown:
        if alarm.kind in HEALTH_KINDS:
            bad.append((alarm.source, HealthState(alarm.kind), str(alarm.detail.get("message", ""))))
            continue
        mark = "✖ " if alarm.severity == "error" else "▲ "
        parts += [(mark + clean(alarm.text, 60), ALARM_STYLE.get(alarm.severity, "bold")), "  "]
    bad += [(name, HealthState.OFF, "") for name, h in sorted(health.items()) if h.state is HealthState.OFF]
    if not bad and not waiting:
        return Content.assemble(*parts, ("● all sources OK", "$success"))
    for i, (name, state, message) in enumerate(bad):
        label, style = badge(state)
        if i:
            parts.append("  ")
        parts.append((f"{label.split()[0]} {name}", style))
        # The first problem gets its reason here; the others have theirs in their pane.
        if i == 0 and message and state is not HealthState.OFF:
            parts += [": ", clean(message, 120)]
    if waiting:
        parts += ["  " if parts else "", ("… starting: " + ", ".join(waiting), "$text-muted")]
    return Content.assemble(*parts)


class HostHeader(Widget):
    """Docked at the top; the app calls `update_from` when host data or health changes.

    Repaints only the lines that changed: each second the host line does, the title
    and the problems rarely, and every repainted line costs CPU and bytes over SSH."""

    DEFAULT_CSS = """
    HostHeader { dock: top; height: 3; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self) -> None:
        super().__init__(id="header", markup=False)
        self._last: tuple[Any, ...] = ()
        self._lines: list[Content] = []

    def render(self) -> Content:
        return Content("\n").join(self._lines)

    def on_resize(self) -> None:
        if self._last:
            self.update_from(*self._last[:5])

    def update_from(
        self,
        marks: Marks,
        host: Snapshot | None,
        health: dict[str, Health],
        waiting: tuple[str, ...] = (),
        alarms: tuple[Alarm, ...] = (),
    ) -> None:
        data = host.data if host is not None and isinstance(host.data, HostData) else None
        width = max(0, self.size.width - 2)
        key = (marks, host, health, waiting, alarms, width)
        if key == self._last:
            return  # nothing changed: no repaint, no bytes to the terminal
        resized = not self._last or self._last[-1] != width
        self._last = key
        lines = [
            title_line(marks, data, width),
            host_line(data, width),
            problem_line(health, waiting, alarms),
        ]
        old, self._lines = self._lines, lines
        if resized or len(old) != len(lines):
            self.refresh()
            return
        changed = [
            Region(0, y, self.size.width, 1)
            for y, (a, b) in enumerate(zip(old, lines, strict=True))
            if (a.plain, a.spans) != (b.plain, b.spans)
        ]  # Content == compares text only
        if changed:
            self.refresh(*changed)
