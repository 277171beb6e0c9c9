"""The selfcost source: ebpftop's own CPU, memory, terminal output and BPF programs.

The kernel's BPF run-time stats are a global switch that costs every program on the
host two clock reads a run, so this source turns them on only when asked (the TUI's
own-cost screen while it is open, `snapshot --bpf-stats` for its duration) and off
again when told; the switch is an fd (BPF_ENABLE_STATS), so a crash turns them off too.
Every program on the host is listed only while they are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from ebpftop.core.collector import Collector
from ebpftop.core.settings import Settings
from ebpftop.core.untrusted import clean

from ..bpfsys import BpfError, ProgInfo, enable_stats
from .model import STATS_OFF, STATS_ON, STATS_SYSCTL, BpfStats, ProgCost, SelfCostData
from .process import ProcessMeter
from .programs import host_programs, own_programs

NAME = "selfcost"
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
HOST_MAX = 200  # programs on the host listed, busiest first


class ByteMeter:
    """Bytes written to the terminal: the TUI adds, the collector reads. Only the UI
    thread adds; an int read from another thread is whole."""

    def __init__(self) -> None:
        self.total = 0
        self.attached = False  # something writes through it (no terminal: headless, tests)

    def add(self, n: int) -> None:
        self.total += n


class StatsSwitch:
    """The BPF_ENABLE_STATS fd: run-time stats are counted while it is open."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.since: float | None = None
        self.error = ""

    @property
    def on(self) -> bool:
        return self._fd is not None

    def turn_on(self) -> bool:
        """True when on; on failure (not root, an old kernel) `error` says why."""
        with self._lock:
            if self._fd is None:
                try:
                    self._fd = enable_stats()
                except BpfError as exc:
                    self.error = f"cannot turn BPF stats on: {exc.strerror or exc}"
                    return False
                self.since, self.error = time.time(), ""
            return True

    def turn_off(self) -> None:
        with self._lock:
            fd, self._fd, self.since = self._fd, None, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def find(runtime: Any) -> SelfCostCollector | None:
    """The live selfcost collector of a runtime, or None (a replay, a test without it)."""
    for c in getattr(runtime, "collectors", None) or ():
        if isinstance(c, SelfCostCollector):
            return c
    return None


class SelfCostCollector(Collector):
    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.interval = settings.refresh
        self.pin_dir = settings.rules_pin_dir
        self.terminal = ByteMeter()
        self.switch = StatsSwitch()
        self._process = ProcessMeter()
        self._prev_t: float | None = None
        self._prev_runs: dict[int, tuple[int, int]] = {}  # prog id -> (run_cnt, run_time_ns)
        self._prev_bytes: int | None = None

    # The switch is thrown from the UI thread or the headless runner; sampling reads it.
    def stats_on(self) -> bool:
        return self.switch.turn_on()

    def stats_off(self) -> None:
        self.switch.turn_off()

    async def collect(self) -> SelfCostData:
        return await asyncio.to_thread(self._sample)

    async def close(self) -> None:
        self.stats_off()

    def _sample(self) -> SelfCostData:
        now = time.monotonic()
        dt = None if self._prev_t is None else max(now - self._prev_t, 1e-6)
        proc = self._process.sample()
        stats = self.stats_state()
        runs: dict[int, tuple[int, int]] = {}
        ours = [self._cost(info, owner, dt, runs) for info, owner in own_programs(self.pin_dir)]
        host: list[ProgCost] = []
        if stats.state != STATS_OFF:
            mine = {p.id for p in ours}
            others = [self._cost(i, None, dt, runs) for i in host_programs() if i.id not in mine]
            host = sorted([*ours, *others], key=_busiest)[:HOST_MAX]
        self._prev_t, self._prev_runs = now, runs
        term_bps = term_total = None
        if self.terminal.attached:
            term_total = self.terminal.total
            if self._prev_bytes is not None and dt is not None:
                term_bps = max(0, term_total - self._prev_bytes) / dt
            self._prev_bytes = term_total
        return SelfCostData(
            pid=os.getpid(),
            cpu_percent=proc.cpu_percent,
            rss_bytes=proc.rss_bytes,
            threads=proc.threads,
            children=proc.children,
            terminal_bps=term_bps,
            terminal_bytes=term_total,
            stats=stats,
            programs=tuple(ours),
            host_programs=tuple(host),
        )

    def stats_state(self) -> BpfStats:
        """The switch as it is now: ours, sysctl's, or off (with why turning it on failed)."""
        switch = self.switch
        since = switch.since
        if since is not None:
            return BpfStats(STATS_ON, since)
        try:
            sysctl = SYSCTL.read_text().strip() not in ("", "0")
        except OSError:
            sysctl = False
        return BpfStats(STATS_SYSCTL if sysctl else STATS_OFF, None, clean(switch.error, 200))

    def _cost(
        self, info: ProgInfo, owner: str | None, dt: float | None, runs: dict[int, tuple[int, int]]
    ) -> ProgCost:
        runs[info.id] = (info.run_cnt, info.run_time_ns)
        prev = self._prev_runs.get(info.id)
        per_s = ns_run = cpu = None
        if prev is not None and dt is not None:
            d_cnt = max(0, info.run_cnt - prev[0])
            d_ns = max(0, info.run_time_ns - prev[1])
            per_s = d_cnt / dt
            cpu = d_ns / dt / 1e7  # ns per s -> percent of one CPU
            ns_run = d_ns / d_cnt if d_cnt else None
        return ProgCost(
            id=info.id,
            name=info.name,
            type=info.type,
            owner=owner,
            run_cnt=info.run_cnt,
            run_time_ns=info.run_time_ns,
            runs_per_s=per_s,
            ns_per_run=ns_run,
            cpu_percent=cpu,
        )


def _busiest(p: ProgCost) -> tuple[float, int]:
    return (-(p.cpu_percent or 0.0), p.id)
