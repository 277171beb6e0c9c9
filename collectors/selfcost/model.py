"""The selfcost payload: what ebpftop itself costs the host it watches.

The process (CPU, memory, its children such as bcc's symbol helper), what it writes to
the terminal, and its BPF programs with the kernel's run-time stats. Rates are per
second over the last sample interval; a value not known is None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebpftop.core.model import register_payload

# BpfStats.state
STATS_ON = "on"  # this process holds the kernel's run-time stats switch (BPF_ENABLE_STATS)
STATS_OFF = "off"
STATS_SYSCTL = "on by sysctl"  # kernel.bpf_stats_enabled=1: someone else's switch


@dataclass(frozen=True)
class ProgCost:
    id: int
    name: str  # the kernel's program name (at most 15 bytes); untrusted
    type: str  # "tc", "tracepoint", "perf_event"... (bpfsys.prog_info)
    owner: str | None  # ebpftop's part that loaded it ("flows", "rules"...); None: not ebpftop's
    run_cnt: int  # the kernel's cumulative counters (they count only while stats are on)
    run_time_ns: int
    runs_per_s: float | None  # over the last interval; None on the first sample
    ns_per_run: float | None  # over the last interval; None without a run in it
    cpu_percent: float | None  # run time over wall time of the interval, of one CPU


@dataclass(frozen=True)
class BpfStats:
    state: str  # STATS_ON, STATS_OFF or STATS_SYSCTL
    since: float | None = None  # wall time this process turned them on
    error: str = ""  # why turning them on failed


@dataclass(frozen=True)
class SelfCostData:
    pid: int
    cpu_percent: float | None  # process and children, of one CPU; None on the first sample
    rss_bytes: int  # process and children
    threads: int
    children: int  # live child processes (bcc's symbol helper...)
    terminal_bps: float | None  # bytes written to the terminal per second; None: no terminal
    terminal_bytes: int | None
    stats: BpfStats
    programs: tuple[ProgCost, ...]  # ebpftop's: held by this process, or its pinned rules
    host_programs: tuple[ProgCost, ...] = ()  # every program on the host, busiest first, while stats are on


register_payload("selfcost", SelfCostData)
