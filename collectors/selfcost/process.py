"""This process's CPU and memory, its children included (bcc's symbol helper...)."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessSample:
    cpu_percent: float | None  # of one CPU, over the time since the previous sample
    rss_bytes: int
    threads: int
    children: int


class ProcessMeter:
    def __init__(self, pid: int | None = None) -> None:
        self.proc = psutil.Process(pid)
        self._prev: tuple[float, float] | None = None  # (monotonic, cpu seconds)

    def sample(self) -> ProcessSample:
        now = time.monotonic()
        with self.proc.oneshot():
            times = self.proc.cpu_times()
            rss = self.proc.memory_info().rss
            threads = self.proc.num_threads()
        # children_* hold the children already waited for, so a helper that exits
        # between two samples keeps its CPU time in the sum.
        cpu = times.user + times.system + times.children_user + times.children_system
        kids = descendants(self.proc)
        for kid in kids:
            try:
                with kid.oneshot():
                    t = kid.cpu_times()
                    cpu += t.user + t.system
                    rss += kid.memory_info().rss
            except psutil.Error:
                continue  # gone meanwhile
        percent = None
        if self._prev is not None:
            prev_t, prev_cpu = self._prev
            percent = max(0.0, cpu - prev_cpu) / max(now - prev_t, 1e-6) * 100.0
        self._prev = (now, cpu)
        return ProcessSample(percent, rss, threads, len(kids))


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Children, grandchildren... from /proc/PID/task/*/children: psutil's own walk reads
    every process on the host, which on a busy one costs more than the rest of a sample."""
    out: list[psutil.Process] = []
    todo = [proc.pid]
    while todo:
        pid = todo.pop()
        files = glob.glob(f"/proc/{pid}/task/*/children")
        if not files and pid == proc.pid:
            return proc.children(recursive=True)  # a kernel without CONFIG_PROC_CHILDREN
        for name in files:
            try:
                with open(name) as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue  # the thread or process ended meanwhile
            for kid in kids:
                try:
                    out.append(psutil.Process(kid))
                except psutil.Error:
                    continue
                todo.append(kid)
    return out
