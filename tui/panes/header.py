"""The header: the host at a glance, the app's mode marks, and what is wrong.

Three or four lines, in order of what the incident room needs: the title with its marks
(READ-ONLY, PAUSED, replay position), the host (CPU, load, memory, network), then what
is wrong (core/alarms.py: the data's alarms, then sources not OK, worst first), so a
problem shows without a keypress. What is wrong takes a second line when one is too
short, wrapped between words; what still does not fit ends in an ellipsis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from textual.content import Content
from textual.geometry import Region
from textual.widget import Widget

from ebpftop.core.alarms import HEALTH_KINDS, Alarm, health_alarm, ordered
from ebpftop.core.model import Health, HealthState, HostData, Snapshot
from ebpftop.core.stream import AgentLink

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
    node: str | None = None  # the node's name before its first host sample, untrusted
    agent: AgentLink | None = None  # the agent this dashboard views; None: it collects itself


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
    tail += agent_mark(marks.agent)
    if marks.recording == "recording":
        tail += ["  ", ("● REC", "bold $error"), f" {fmt.size(marks.recording_size)}"]
    elif marks.recording:
        tail += ["  ", (f" REC {clean(marks.recording, 20).upper()} ", "bold reverse $warning")]
    head: list[str | tuple[str, str]] = [(clean(marks.title, 60), "bold")]
    variants = [head + tail]
    if host is None and marks.node:
        variants = [[*head, "  ", (clean(marks.node, 40), "bold $accent"), *tail], *variants]
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


def agent_mark(link: AgentLink | None) -> list[Part]:
    """Where the data comes from when an agent collects it: "via agent HOST", or loudly
    that the agent is down (its reason is on the problem line); frames it dropped."""
    if link is None:
        return []
    if link.state == "down":
        return ["  ", (" AGENT DOWN ", "bold reverse $error")]
    if link.state == "connecting":
        return ["  ", ("connecting to agent…", "$text-muted")]
    parts: list[Part] = ["  ", ("via agent " + (clean(link.host, 40) or "?"), "bold $secondary")]
    if link.drops:
        parts.append((f" {link.drops} dropped", "bold $warning"))
    return parts


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
# a state to know rather than a fault: the canary is out of traffic
KIND_MARK = {"rolled_back": ("↩ ", "bold $accent")}
ALARM_MAX = 200  # an alarm names every breach; the wrap, not a cut, fits it
PROBLEM_LINES = 2
MORE = " …"
_WORD = re.compile(r"(?:[^\w\s] )?\S+")  # a mark (✖ ▲ ↩ ○) stays with the word it marks


def problem_line(
    health: dict[str, Health],
    waiting: tuple[str, ...] = (),
    alarms: tuple[Alarm, ...] = (),
    all_ok: bool = True,
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
        mark, style = KIND_MARK.get(alarm.kind) or (
            "✖ " if alarm.severity == "error" else "▲ ",
            ALARM_STYLE.get(alarm.severity, "bold"),
        )
        parts += [(mark + clean(alarm.text, ALARM_MAX), style), "  "]
    bad += [(name, HealthState.OFF, "") for name, h in sorted(health.items()) if h.state is HealthState.OFF]
    if not bad and not waiting:
        return Content.assemble(*parts, ("● all sources OK", "$success") if all_ok else "")
    for i, (name, state, message) in enumerate(bad):
        label, style = badge(state)
        if i:
            parts.append("  ")
        parts.append((f"{label.split()[0]} {name}", style))
        # The first problem gets its reason here; the others have theirs in their pane.
        if i == 0 and message and state is not HealthState.OFF:
            parts += [": ", clean(message, 120)]
    if waiting:
        # no space after the ellipsis: a wrap there would look like a cut
        parts += ["  " if parts else "", ("…starting: " + ", ".join(waiting), "$text-muted")]
    return Content.assemble(*parts)


def problem_lines(
    health: dict[str, Health],
    waiting: tuple[str, ...] = (),
    alarms: tuple[Alarm, ...] = (),
    width: int = 0,
    most: int = PROBLEM_LINES,
) -> list[Content]:
    """`problem_line` wrapped between words into at most `most` lines of `width`; the
    last ends in an ellipsis when more did not fit."""
    line = problem_line(health, waiting, alarms)
    if not width or line.cell_length <= width:
        return [line]
    if alarms:  # beside an alarm, "all sources OK" is not worth a line of its own
        short = problem_line(health, waiting, alarms, all_ok=False)
        if short.cell_length <= width:
            return [short.rstrip()]
    wrapped = _wrap(line, width)
    if len(wrapped) <= most:
        return wrapped
    return [*wrapped[: most - 1], _more(wrapped[most - 1], width)]


def _wrap(line: Content, width: int) -> list[Content]:
    """`line` in lines of `width`, broken between words, never after a lone mark; a word
    longer than the line is folded."""
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(line.plain):
        start, end = m.span()
        if spans and line[spans[-1][0] : end].cell_length <= width:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [piece for start, end in spans for piece in line[start:end].wrap(width)]


def _more(line: Content, width: int) -> Content:
    """`line` cut at a word boundary to end in the ellipsis that says more follows."""
    room = width - len(MORE)
    text = line.plain
    cut = len(text) if len(text) <= room else text.rfind(" ", 0, room + 1)
    if cut <= 0:  # one word longer than the line: cut inside it, the ellipsis says so
        cut = room
    kept = text[:cut].rstrip()
    if len(kept) > 2 and kept[-2] == " " and not kept[-1].isalnum():  # nor end on a lone mark
        cut = len(kept) - 2
    return Content.assemble(line[:cut].rstrip(), (MORE, "bold")).truncate(width)


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
        width = self.size.width  # the content's: the padding is already taken off
        key = (marks, host, health, waiting, alarms, width)
        if key == self._last:
            return  # nothing changed: no repaint, no bytes to the terminal
        resized = not self._last or self._last[-1] != width
        self._last = key
        lines = [
            title_line(marks, data, width),
            host_line(data, width),
            *problem_lines(health, waiting, alarms, width),
        ]
        old, self._lines = self._lines, lines
        if resized or len(old) != len(lines):
            self.styles.height = len(lines)
            self.refresh()
            return
        changed = [
            Region(0, y, self.size.width, 1)
            for y, (a, b) in enumerate(zip(old, lines, strict=True))
            if (a.plain, a.spans) != (b.plain, b.spans)
        ]  # Content == compares text only
        if changed:
            self.refresh(*changed)
