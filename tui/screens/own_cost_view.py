"""What the own-cost screen says, as lines of (text, style) runs: no Textual here.

Program names come from the kernel, loaded by anyone on the host: cleaned and cut.
"""

from __future__ import annotations

import time

from ebpftop.collectors.selfcost.model import STATS_ON, STATS_SYSCTL, BpfStats, ProgCost, SelfCostData
from ebpftop.collectors.selfcost.summary import OwnCost

from ..panes.fmt import NO_DATA, Part, duration, number, rate, size
from ..text import clean

Line = list[Part]
MUTED, WARN, HEAD = "$text-muted", "$warning", "bold"
_COLS = f"  {'part':<11} {'program':<15} {'id':>6} {'type':<10} {'runs/s':>7} {'ns/run':>7} {'CPU':>6}"


def stats_line(stats: BpfStats | None, *, live: bool, read_only: bool, close_after: float) -> list[Line]:
    """Whether the kernel's BPF run-time stats are on, whose switch it is, and its cost.
    Live, `stats` is the switch as it is now; in a replay, as the recording says."""
    if stats is None:
        return [[("BPF stats: no sample yet", MUTED)]]
    if not live:
        return [[(f"BPF stats as recorded: {clean(stats.state, 20)}", MUTED)]]
    if stats.state == STATS_ON:
        since = "" if stats.since is None else f" ({duration(time.time() - stats.since)})"
        out: list[Line] = [
            [("BPF stats ON while this is open", f"{WARN} bold"), (since, WARN)],
            [("  kernel-wide: every BPF program on the host pays two clock reads a run", MUTED)],
        ]
        if read_only:
            out.append(
                [(f"  read-only: closes itself after {duration(close_after)}, stats off again", MUTED)]
            )
        return out
    if stats.state == STATS_SYSCTL:
        return [[("BPF stats on by sysctl kernel.bpf_stats_enabled=1 (not ebpftop's switch)", WARN)]]
    return [[(f"BPF stats off: {clean(stats.error or 'not turned on', 120)}", WARN)]]


def process_lines(data: SelfCostData | None) -> list[Line]:
    if data is None:
        return [[("process: no sample yet", MUTED)]]
    kids = f" · {data.children} child{'ren' if data.children != 1 else ''}" if data.children else ""
    cpu = NO_DATA if data.cpu_percent is None else f"{data.cpu_percent:.1f}%"
    term = (
        f"{rate(data.terminal_bps)} written ({size(data.terminal_bytes)} since start)"
        if data.terminal_bytes is not None
        else "no terminal (headless or replay)"
    )
    return [
        [
            (f"ebpftop pid {data.pid}", HEAD),
            f"  CPU {cpu}  RSS {size(data.rss_bytes)}  {data.threads} threads{kids}",
        ],
        [("terminal ", HEAD), term],
    ]


def loss_lines(cost: OwnCost) -> list[Line]:
    cells = [f"{clean(loss.what, 40)} {number(loss.count)}" for loss in cost.losses]
    out: list[Line] = [[("losses since start", HEAD)]]
    for i in range(0, len(cells), 2):
        pair = cells[i : i + 2]
        out.append([("  " + "  ·  ".join(pair), "")])
    return out


def prog_row(p: ProgCost) -> Line:
    cpu = NO_DATA if p.cpu_percent is None else f"{p.cpu_percent:.2f}%"
    per_s = number(round(p.runs_per_s)) if p.runs_per_s is not None else NO_DATA
    ns = NO_DATA if p.ns_per_run is None else f"{p.ns_per_run:.0f}"
    owner = clean(p.owner or "", 11)
    return [
        (f"  {owner:<11} ", MUTED if p.owner is None else ""),
        f"{clean(p.name, 15):<15} {p.id:>6} {clean(p.type, 10):<10} {per_s:>7} {ns:>7} {cpu:>6}",
    ]


def program_lines(data: SelfCostData | None) -> list[Line]:
    if data is None:
        return []
    cpus = [p.cpu_percent for p in data.programs if p.cpu_percent is not None]
    total = f": {sum(cpus):.2f}% of a CPU" if cpus else ""
    out: list[Line] = [[(f"ebpftop's BPF programs{total}", HEAD), ("  (tc: one run per packet)", MUTED)]]
    if not data.programs:
        out.append([("  none loaded (not root, or the BPF sources are off)", MUTED)])
        return out
    out.append([(_COLS, MUTED)])
    out.extend(prog_row(p) for p in data.programs)
    if data.host_programs:
        out.append([(f"every BPF program on the host, busiest first ({len(data.host_programs)})", HEAD)])
        out.append([(_COLS, MUTED)])
        out.extend(prog_row(p) for p in data.host_programs)
    return out


def own_cost_lines(
    cost: OwnCost, switch: BpfStats | None, *, read_only: bool, close_after: float
) -> list[Line]:
    """`switch`: the stats switch as it is now (live), None in a replay (the recording's)."""
    data = cost.process
    stats = switch if switch is not None else data.stats if data is not None else None
    return [
        *process_lines(data),
        *stats_line(stats, live=switch is not None, read_only=read_only, close_after=close_after),
        *loss_lines(cost),
        *program_lines(data),
    ]
