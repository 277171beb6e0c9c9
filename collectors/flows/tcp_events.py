"""TCP connection events: connect latency, open/close, retransmits.

The BPF side (tcp_events.bpf.c) uses stable tracepoints only. Events come through a
BPF ring buffer (a perf buffer on kernels before 5.8); every event the kernel could
not queue is counted there and reported here, never dropped silently.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from .layout import EVENT_KINDS, TCP_EVENT, TCP_TUPLE, addr
from .model import TcpEvent

log = logging.getLogger(__name__)

SRC = Path(__file__).resolve().parent / "tcp_events.bpf.c"
TCNT_EVENTS, TCNT_LOST = 0, 1
RING_PAGES = 512  # 2 MiB: a second of events at ~25k connections/s between polls

# (local addr, local port, remote addr, remote port), as strings/ints
Tuple4 = tuple[str, int, str, int]


class _Bounded(OrderedDict[Tuple4, Any]):
    """A dict that forgets its oldest entries past `limit`, so memory stays flat."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Tuple4, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def tracefs_ready() -> str | None:
    """None when tracepoints can be used, else why not."""
    for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(f"{base}/events/sock/inet_sock_set_state"):
            return None
    return "tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)"


class TcpEvents:
    def __init__(self, *, history: int = 2000, per_flow: int = 20, ring_pages: int = RING_PAGES) -> None:
        if ring_pages < 1 or ring_pages & (ring_pages - 1):
            raise ValueError(f"ring buffer pages must be a power of two, not {ring_pages}")
        self.ring_pages = ring_pages
        self.bpf: Any = None  # bcc.BPF: bcc ships no type information
        self.perfbuf = False
        self.recent: deque[TcpEvent] = deque(maxlen=history)
        self.by_tuple: _Bounded = _Bounded(65536)  # Tuple4 -> deque[TcpEvent]
        self.connect_ms: _Bounded = _Bounded(65536)  # Tuple4 -> latency ms
        self.owners: _Bounded = _Bounded(65536)  # Tuple4 -> (pid, comm), from connect
        self._per_flow = per_flow
        self._mono_to_wall = time.time() - time.monotonic()
        self.received = 0
        self.perf_lost = 0  # perf buffer reports losses to user space as well

    def compile(self) -> None:
        from bcc import BPF

        from ..bpfcompile import COMPILE_LOCK, yielding

        reason = tracefs_ready()
        if reason:
            raise RuntimeError(reason)
        cflags = [f"-I{SRC.parent}", f"-DRB_PAGES={self.ring_pages}", "-Wno-unused-function"]
        if _tracepoint_has_field("tcp", "tcp_retransmit_skb", "err"):
            cflags.append("-DRETRANS_HAS_ERR")
        self.perfbuf = not _has_ringbuf()
        if self.perfbuf:
            cflags.append("-DUSE_PERFBUF")
        with COMPILE_LOCK, yielding():  # not thread-safe; at a lower priority (bpfcompile.py)
            self.bpf = BPF(src_file=str(SRC).encode(), cflags=cflags)
        if self.perfbuf:
            self.bpf["events"].open_perf_buffer(self._on_perf, page_cnt=64, lost_cb=self._on_lost)
        else:
            self.bpf["events"].open_ring_buffer(self._on_ring)

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None

    # --- event intake ------------------------------------------------------------------

    def _on_lost(self, count: int) -> None:
        self.perf_lost += count

    def _on_perf(self, _cpu: int, data: int, size: int) -> None:
        self._take(ctypes.string_at(data, size))

    def _on_ring(self, _ctx: int, data: int, size: int) -> int:
        self._take(ctypes.string_at(data, size))
        return 0

    def _take(self, raw: bytes) -> None:
        if len(raw) < TCP_EVENT.size:
            return
        (
            ts,
            value,
            pid,
            sport,
            dport,
            saddr,
            daddr,
            comm,
            etype,
            family,
        ) = TCP_EVENT.unpack_from(raw)
        self.received += 1
        kind = EVENT_KINDS.get(etype, str(etype))
        src, dst = addr(family, saddr), addr(family, daddr)
        ms = value / 1e6 if value else None
        name = comm.split(b"\0", 1)[0].decode(errors="replace") or None
        ev = TcpEvent(ts / 1e9 + self._mono_to_wall, kind, src, sport, dst, dport, ms, pid or None, name)
        self.recent.append(ev)
        key = (src, sport, dst, dport)
        q = self.by_tuple.get(key)
        if q is None:
            q = deque(maxlen=self._per_flow)
        q.append(ev)
        self.by_tuple.put(key, q)
        if kind == "connect":
            if ms is not None:
                self.connect_ms.put(key, ms)
            if pid:
                self.owners.put(key, (pid, name))

    def poll(self) -> None:
        """Drain what is queued now; never blocks."""
        if self.bpf is None:
            return
        if self.perfbuf:
            self.bpf.perf_buffer_poll(timeout=0)
        else:
            self.bpf.ring_buffer_consume()

    # --- counters ----------------------------------------------------------------------

    def counters(self) -> tuple[int, int]:
        """(events submitted, events lost) as counted in the kernel."""
        t = self.bpf["tcounters"]
        sub = sum(int(v) for v in t.getvalue(t.Key(TCNT_EVENTS)))
        lost = sum(int(v) for v in t.getvalue(t.Key(TCNT_LOST)))
        return sub, lost + self.perf_lost

    def retransmits(self, local: str, lport: int, remote: str, rport: int) -> int:
        """Retransmits of one connection, counted in the kernel (one lookup: the map
        can hold 64k connections, the pane shows a few hundred)."""
        table = self.bpf["retrans"]
        family = 6 if ":" in local else 4
        key = TCP_TUPLE.pack(_packed(family, local), _packed(family, remote), lport, rport, family)
        value = table.get(table.Key.from_buffer_copy(key))
        if value is None and family == 4:
            # a dual-stack (AF_INET6) socket reports IPv4 peers as ::ffff:a.b.c.d
            key = TCP_TUPLE.pack(
                _packed(6, "::ffff:" + local), _packed(6, "::ffff:" + remote), lport, rport, 6
            )
            value = table.get(table.Key.from_buffer_copy(key))
        return int(value.value) if value is not None else 0

    def events_for(self, local: str, lport: int, remote: str, rport: int) -> tuple[TcpEvent, ...]:
        return tuple(self.by_tuple.get((local, lport, remote, rport), ()))


def _packed(family: int, text: str) -> bytes:
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def _tracepoint_has_field(category: str, event: str, name: str) -> bool:
    """Tracepoint arguments differ between kernels; the format file says what is there."""
    for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        try:
            text = Path(f"{base}/events/{category}/{event}/format").read_text()
        except OSError:
            continue
        return any(
            line.strip().startswith("field:") and line.split(";")[0].split()[-1] == name
            for line in text.splitlines()
        )
    return False


def _has_ringbuf() -> bool:
    """BPF ring buffers arrived in 5.8."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (5, 8)
