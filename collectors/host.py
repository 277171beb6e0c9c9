"""Host header: CPU, memory, load and network rates from psutil."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time

import psutil

from ebpftop.core.collector import Collector
from ebpftop.core.model import HostData, NicRate


class HostCollector(Collector):
    name = "host"

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._prev: tuple[float, dict[str, tuple[int, int]]] | None = None
        self._cpu_primed = False

    def _sample(self) -> HostData:
        if not self._cpu_primed:
            psutil.cpu_percent(interval=None)  # the first call only sets the baseline
            self._cpu_primed = True
        now = time.monotonic()
        counters = psutil.net_io_counters(pernic=True)
        stats = psutil.net_if_stats()
        current = {n: (c.bytes_recv, c.bytes_sent) for n, c in counters.items()}
        nics: list[NicRate] = []
        rx_total: float | None = None
        tx_total: float | None = None
        if self._prev is not None:
            prev_t, prev = self._prev
            dt = max(now - prev_t, 1e-6)
            rx_total = tx_total = 0.0
            for nic, (rx, tx) in current.items():
                if nic not in prev:
                    continue
                # Counters can go backwards when an interface is recreated: treat as 0.
                rx_bps = max(0, rx - prev[nic][0]) / dt
                tx_bps = max(0, tx - prev[nic][1]) / dt
                up = stats[nic].isup if nic in stats else False
                nics.append(NicRate(nic, rx_bps, tx_bps, up))
                if nic != "lo":
                    rx_total += rx_bps
                    tx_total += tx_bps
        self._prev = (now, current)
        mem = psutil.virtual_memory()
        return HostData(
            hostname=socket.gethostname(),
            kernel=platform.release(),
            uptime_s=time.time() - psutil.boot_time(),
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count() or 1,
            load=tuple(os.getloadavg()),  # type: ignore[arg-type]
            mem_total=mem.total,
            mem_used=mem.total - mem.available,
            mem_percent=mem.percent,
            net_rx_bps=rx_total,
            net_tx_bps=tx_total,
            nics=tuple(sorted(nics, key=lambda n: n.rx_bps + n.tx_bps, reverse=True)),
        )

    async def collect(self) -> HostData:
        return await asyncio.to_thread(self._sample)
