"""The flows source: kernel flow accounting + TCP events -> FlowsData each tick.

Start compiles the BPF in a thread (seconds) so the UI draws before it is done.
Each tick reads the flow map in one batch, turns counters into rates, merges the
map's entries (one per 5-tuple, hook and direction) into connections (connections.py),
keeps the top N connections, and attributes them to processes. What could not be counted (evictions, refused
inserts, lost events, interfaces that failed) is in the payload, never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from ebpftop.collectors.identity.model import Identity
from ebpftop.collectors.identity.shared_pods import SharedPods
from ebpftop.core.collector import Collector, SourceUnavailable

from .. import kclock
from . import rates, tclegacy
from .attribution import Attributor
from .connections import Connections, Merger, first_entry, same_way
from .layout import decode_key, proto_name
from .loader import FlowsDatapath, ifindex_of, up_interfaces
from .model import FlowPath, FlowRecord, FlowsData, IfaceStatus, TcpEvent, flow_record
from .table import FlowTable

if TYPE_CHECKING:
    from .tcp_events import TcpEvents

log = logging.getLogger(__name__)

PER_FLOW_EVENTS = 10
INLINE_S = 0.004  # ticks shorter than this run on the event loop (see collect)
RECENT_EVENTS = 100


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """bcc/clang print compile errors on fd 2, which would scribble over the TUI.
    Send them to a file instead and hand back the text for the error message."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read())


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def preflight() -> None:
    """Fail fast, with the reason and the fix, before spending seconds compiling."""
    if os.geteuid() != 0:
        raise SourceUnavailable("BPF needs root", "run `sudo ebpftop`")
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise SourceUnavailable(
            "bcc is not installed", "apt-get install python3-bpfcc (and use a venv with system site-packages)"
        ) from None
    release = os.uname().release
    build = f"/lib/modules/{release}/build"
    if not os.path.exists(f"{build}/include") and not os.path.exists("/sys/kernel/kheaders.tar.xz"):
        raise SourceUnavailable(
            f"no kernel headers for {release} ({build} is missing)",
            "apt-get install linux-headers-$(uname -r), or run scripts/setup.sh",
        )


# (retransmits, connect_ms, pid, comm, peer pid, events) of one flow
Attributed = tuple[int, float | None, int | None, str | None, int | None, tuple[TcpEvent, ...]]
ENDED = ("close", "connect_fail")  # a connection whose socket's last event is one of these has ended


def _path_order(p: FlowPath) -> tuple[bool, str, str]:
    return (not p.forward, p.iface, p.direction)


class FlowsCollector(Collector):
    name = "flows"

    def __init__(
        self,
        ifaces: Sequence[str] = (),
        *,
        interval: float = 1.0,
        top_n: int = 500,
        max_flows: int = 131072,
        mode: str = "auto",
        idle_expiry: float = 300.0,
        tcp_events: bool = True,
        tcp_ring_pages: int | None = None,
        attributor: Attributor | None = None,
        pods: SharedPods | None = None,
    ) -> None:
        self.tcp_ring_pages = tcp_ring_pages
        self.interval = interval
        self.requested = tuple(ifaces)
        self.top_n = top_n
        self.max_flows = max_flows
        self.mode = mode
        self.idle_expiry = idle_expiry
        self.want_tcp = tcp_events
        self.attributor = attributor or Attributor()
        self.pods = pods  # Kubernetes pods by UID, when an API is configured
        self.attributor.identities.pods = pods
        self._owners: dict[int, Identity] = {}  # this tick's records' processes
        self.dp: FlowsDatapath | None = None
        self.tcp: TcpEvents | None = None
        self.tcp_error: str | None = None
        self.iface_errors: dict[str, str] = {}
        self.notices: list[str] = []
        self._gone_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._prev: FlowTable | None = None
        self._prev_ns: int | None = None  # CLOCK_MONOTONIC of the last read
        self._prev_j: int | None = None  # the same moment in jiffies, the map's clock
        self._evictions = 0
        self._seen_lost = 0
        self._seen_failed = 0
        self._new_problem = ""
        self._took: float | None = None  # how long the last tick took (None: none yet, or it failed)
        self._decoded: dict[bytes, list[Any]] = {}  # the last tick's top flows: see _decode
        self._names: dict[int, str] = {}  # ifindex -> attached interface, as _decoded knows it
        self._merger = Merger()

    # --- start / stop ------------------------------------------------------------------

    async def start(self) -> None:
        preflight()
        await asyncio.to_thread(self._start_sync)
        if self.pods is not None:
            await self.pods.acquire(self)

    def _start_sync(self) -> None:
        try:
            kclock.calibration()
        except OSError as exc:
            raise SourceUnavailable(
                str(exc), "mount /proc (ebpftop reads /proc/timer_list as root)"
            ) from None
        with self._lock:
            self._remove_leftovers()
            dp = FlowsDatapath(self.max_flows, self.mode)
            failure: Exception | None = None
            with captured_stderr() as err:  # err is filled when the block ends
                try:
                    dp.compile()
                except Exception as exc:
                    failure = exc
            if failure is not None:
                dp.close()
                raise SourceUnavailable(
                    f"BPF flow program failed to compile: {_last_lines(err[0]) or failure}",
                    "check the kernel headers (scripts/setup.sh)",
                )
            if err[0].strip():
                log.debug("bcc said while compiling flows: %s", err[0])
            self.dp = dp
            for iface in self._wanted():
                self._attach(iface)
            if not dp.attachments:
                why = "; ".join(f"{k}: {v}" for k, v in self.iface_errors.items()) or "no interface is up"
                self.dp = None
                dp.close()
                raise SourceUnavailable(
                    f"could not attach to any interface ({why})", "check --iface names with `ip link`"
                )
            if self.want_tcp:
                self._start_tcp()

    def _remove_leftovers(self) -> None:
        """Netlink filters of the flows programs a dead ebpftop left (tcx links cannot
        outlive their owner; other ebpftop programs, e.g. pinned rules, are left alone)."""
        try:
            stale = tclegacy.stale_filters()
        except tclegacy.TcError as exc:
            self.notices.append(f"could not look for leftover TC filters: {exc}")
            return
        for f in stale:
            tclegacy.detach(f)
            self.notices.append(f"removed a {f.describe()} left by an ebpftop that is no longer running")
        for pin in tclegacy.stale_pins():
            with contextlib.suppress(OSError):
                os.unlink(pin)
                self.notices.append(f"removed leftover pin {pin}")

    def _start_tcp(self) -> None:
        from .tcp_events import TcpEvents

        tcp = TcpEvents(
            per_flow=PER_FLOW_EVENTS, **({"ring_pages": self.tcp_ring_pages} if self.tcp_ring_pages else {})
        )
        failure: Exception | None = None
        with captured_stderr() as err:  # err is filled when the block ends
            try:
                tcp.compile()
            except Exception as exc:
                failure = exc
        if failure is not None:
            tcp.close()
            detail = str(failure) if isinstance(failure, RuntimeError) else _last_lines(err[0])
            self.tcp_error = f"TCP events unavailable: {detail or failure}"
            return
        self.tcp = tcp
        self.tcp_error = None

    def _wanted(self) -> list[str]:
        return list(self.requested) if self.requested else up_interfaces()

    def _attach(self, iface: str) -> None:
        try:
            self.dp.attach(iface)  # type: ignore[union-attr]
            self.iface_errors.pop(iface, None)
        except Exception as exc:
            msg = getattr(exc, "strerror", None) or str(exc)
            self.iface_errors[iface] = f"attach failed: {msg}"

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)
        if self.pods is not None:
            await self.pods.release(self)

    def close_sync(self) -> None:
        with self._lock:
            if self.tcp is not None:
                self.tcp.close()
                self.tcp = None
            if self.dp is not None:
                self.dp.close()
                self.dp = None

    # --- sampling ----------------------------------------------------------------------

    async def collect(self) -> FlowsData:
        # A thread hop costs more than a small tick (measured: ~1 ms of CPU a second at
        # 1000 flows, the caches cold each time). A tick that took less than INLINE_S runs
        # on the event loop; a big map, a slow tick, or a /proc scan owed (put off by the
        # attributor while on the loop) goes to a thread so the screen never waits on it.
        attributor = self.attributor
        if self._took is not None and self._took < INLINE_S and not attributor.scan_wanted:
            attributor.defer_scans = True
            try:
                return self.sample()
            finally:
                attributor.defer_scans = False
        return await asyncio.to_thread(self.sample)

    def _maintain_ifaces(self) -> None:
        dp = self.dp
        assert dp is not None
        now = time.monotonic()
        for iface, att in list(dp.attachments.items()):
            if ifindex_of(iface) != att.ifindex:
                # tcx: the kernel already dropped the link with the device; close our fd.
                dp.detach(iface)
                self.iface_errors[iface] = "interface disappeared"
                self._gone_at[iface] = now
        wanted = self._wanted()
        for iface in wanted:
            if iface in dp.attachments:
                continue
            if ifindex_of(iface) is None:
                if iface not in self.iface_errors:
                    self.iface_errors[iface] = "no such interface"
                continue
            self._attach(iface)
            self._gone_at.pop(iface, None)
        if not self.requested:
            # Watching "every interface that is up": a vanished one is reported for a
            # minute, then forgotten (containers come and go).
            for iface, t in list(self._gone_at.items()):
                if now - t > 60 and iface not in wanted:
                    self._gone_at.pop(iface)
                    self.iface_errors.pop(iface, None)

    def sample(self) -> FlowsData:
        with self._lock:
            if self.dp is None:
                raise SourceUnavailable("flows datapath is not running", "")
            t0 = time.perf_counter()
            self._took = None  # a tick that fails goes to a thread next time
            data = self._sample()
            self._took = time.perf_counter() - t0
            return data

    def _sample(self) -> FlowsData:
        dp = self.dp
        assert dp is not None
        self._maintain_ifaces()
        if not dp.attachments:
            why = "; ".join(f"{k}: {v}" for k, v in self.iface_errors.items())
            raise RuntimeError(f"no interface attached ({why})")
        counters = dp.counters_total()  # before the map: see rates.evictions
        table = dp.read()
        now_ns = time.monotonic_ns()
        wall = time.time()
        hz, j0, m0 = kclock.calibration()  # the map's times are jiffies
        now_j = kclock.jiffies_at(now_ns)
        if self.idle_expiry > 0:
            idle = table.idle_since(now_j - int(self.idle_expiry * hz))
            if idle:
                dp.delete(idle)
                table = table.without(idle)

        moved_bytes, moved_packets = rates.moved(self._prev, table, self._prev_j, now_j)
        conns = self._merger.merge(table, moved_bytes, moved_packets)
        dt = (now_ns - self._prev_ns) / 1e9 if self._prev_ns is not None and now_ns > self._prev_ns else None
        total_bps, total_pps = rates.total_rate(conns.moved_bytes, conns.moved_packets, dt)
        self._prev, self._prev_ns, self._prev_j = table, now_ns, now_j
        self._evictions = rates.evictions(counters[0], len(table), dp.deleted, self._evictions)

        lost = events_total = None
        tcp = self.tcp
        if tcp is not None:
            tcp.poll()
            events_total, lost = tcp.counters()
        self._prepare_attribution(dp)
        wall_at_jiffy_0 = wall - now_ns / 1e9 + m0 / 1e9 - j0 / hz  # wall = this + jiffies / hz
        top = self._top(conns)
        records = self._records(table, conns, top, moved_bytes, moved_packets, dt, wall_at_jiffy_0, hz)
        self._note_problems(lost, counters[1])
        return FlowsData(
            flows=tuple(records),
            flows_tracked=len(conns),
            total_bytes=sum(conns.nbytes),
            total_packets=sum(conns.packets),
            total_bps=total_bps,
            total_pps=total_pps,
            evictions=self._evictions,
            update_failures=counters[1],
            not_ip_packets=counters[2],
            truncated_packets=counters[3],
            events_total=events_total,
            lost_events=lost,
            tcp_events_error=self.tcp_error,
            recent_events=tuple(tcp.recent)[-RECENT_EVENTS:] if tcp is not None else (),
            ifaces=self._iface_status(dp),
            notices=tuple(self.notices) + self._owner_notices(),
            max_flows=self.max_flows,
            map_entries=len(table),
            owners=tuple(self._owners.values()),
            namespaces=self.attributor.finder.namespaces,
        )

    def _owner_notices(self) -> tuple[str, ...]:
        """What keeps owners from being named now: lookups refused, a pod API failing."""
        found = self.attributor.finder.problem
        pods = self.pods.problem if self.pods is not None else None
        return tuple(p for p in (found, pods) if p)

    def _top(self, conns: Connections) -> list[tuple[int, int, int]]:
        """(rank, bytes, -index) of the top_n connections: by rate, then total bytes; one
        without a known rate after the ones with one."""
        moved_bytes = conns.moved_bytes
        rank: list[int] = (
            cast("list[int]", moved_bytes)
            if None not in moved_bytes
            else [-1 if x is None else x for x in moved_bytes]
        )
        # ties go to the lower index, so most of a tied crowd never enters nlargest's heap
        order = zip(rank, conns.nbytes, range(0, -len(conns), -1), strict=True)
        if len(conns) > 4 * self.top_n:
            return heapq.nlargest(self.top_n, order)
        return sorted(order, reverse=True)[: self.top_n]  # a heap of most of it costs more (timsort, in C)

    def _prepare_attribution(self, dp: FlowsDatapath) -> None:
        names = {a.ifindex: a.iface for a in dp.attachments.values()}
        if names != self._names:
            self._names, self._decoded = names, {}
        attributor = self.attributor
        if not attributor.defer_scans:
            attributor.run_deferred_scan()
        attributor.retry_misses()  # answers are kept per flow while its generation holds

    def _records(
        self,
        table: FlowTable,
        conns: Connections,
        top: list[tuple[int, int, int]],
        moved_bytes: list[int | None],
        moved_packets: list[int | None],
        dt: float | None,
        wall_at_jiffy_0: float,
        hz: float,
    ) -> list[FlowRecord]:
        """The records of the `top` connections, each entry's key decoded once while it
        stays on top."""
        per_pid: dict[int, Identity] = {}
        self._owners = per_pid
        records = []
        decoded, self._decoded = self._decoded, {}
        keep = self._decoded
        keys, packets_of, nbytes_of, first_of, last_of = (
            table.keys,
            table.packets,
            table.nbytes,
            table.first,
            table.last,
        )

        def decode(i: int) -> list[Any]:
            k = keys[i]
            d = keep.get(k) or decoded.get(k)
            if d is None:  # decoding (addresses to text) once per entry while it stays on top
                d = self._decode(k)
            keep[k] = d
            return d

        self._prefetch_owners([decode(first_entry(table, conns.members[-minus_c])) for _, _, minus_c in top])

        def rate(moved: int | None, moved_p: int | None) -> tuple[float | None, float | None]:
            # moved_p is None exactly when moved is (rates.moved, Merger.merge)
            if moved is None or moved_p is None or dt is None:
                return None, None
            return moved / dt, moved_p / dt

        for _, nbytes, minus_c in top:
            c = -minus_c
            members = conns.members[c]
            i = first_entry(table, members)
            d = decode(i)
            iface, direction, proto, src, sport, dst, dport, _local, _tcp_flow, owned_gen, _mine, _theirs = d
            bps, pps = rate(conns.moved_bytes[c], conns.moved_packets[c])
            if isinstance(members, int):
                first, last = first_of[i], last_of[i]
                paths: tuple[FlowPath, ...] = (
                    FlowPath(iface, direction, True, packets_of[i], nbytes, bps, pps),
                )
            else:
                first, last = min(first_of[m] for m in members), max(last_of[m] for m in members)
                ki = keys[i]
                paths = tuple(
                    sorted(
                        (
                            FlowPath(
                                decode(m)[0],
                                decode(m)[1],
                                same_way(keys[m], ki),
                                packets_of[m],
                                nbytes_of[m],
                                *rate(moved_bytes[m], moved_packets[m]),
                            )
                            for m in members
                        ),
                        key=_path_order,
                    )
                )
            retransmits, connect_ms, pid, comm, service, peer_pid = 0, None, None, None, None, None
            events: tuple[TcpEvent, ...] = ()
            if owned_gen is not None:  # tcp and udp
                retransmits, connect_ms, pid, comm, peer_pid, events = self._attributed(d, per_pid)
                if pid is not None:
                    service = per_pid[pid].service
            records.append(
                flow_record(
                    iface,
                    direction,
                    proto,
                    src,
                    sport,
                    dst,
                    dport,
                    conns.packets[c],
                    nbytes,
                    bps,
                    pps,
                    wall_at_jiffy_0 + first / hz,
                    wall_at_jiffy_0 + last / hz,
                    retransmits,
                    connect_ms,
                    pid,
                    comm,
                    service,
                    events,
                    paths,
                    bool(events) and events[-1].kind in ENDED,
                    peer_pid,
                )
            )
        return records

    def _prefetch_owners(self, decoded: list[list[Any]]) -> None:
        """Ask the attributor at once for both ends of the top flows it has no current
        answer for (one batch of lookups, not one per flow)."""
        attributor, gen = self.attributor, self.attributor.generation
        owners = self.tcp.owners if self.tcp is not None else {}
        queries = []
        for d in decoded:
            if d[9] is None or d[9] == gen:
                continue
            proto, local = d[2], d[7]
            other = (local[2], local[3], local[0], local[1])
            for t in (local, other):
                if t not in owners:
                    queries.append((proto, *t))
        if queries:
            attributor.prefetch(queries)

    def _attributed(self, d: list[Any], per_pid: dict[int, Identity]) -> Attributed:
        """(retransmits, connect_ms, pid, comm, peer pid, events) of a TCP or UDP flow
        from its decoded key `d`, whose cached owners it updates when the attributor's
        generation moved. Both ends of a connection may be sockets here (namespaces,
        loopback): each end's events count; the owner is the local end's (as the key's
        direction says), else the other end's; the peer is the other end's when both
        are known. The kernel's connect-time answer wins over a lookup."""
        proto, local, tcp_flow, owned_gen = d[2], d[7], d[8], d[9]
        other = (local[2], local[3], local[0], local[1])
        attributor, tcp = self.attributor, self.tcp
        retransmits, connect_ms = 0, None
        events: tuple[TcpEvent, ...] = ()
        kernel_owner = their_owner = None
        if tcp_flow and tcp is not None:
            retransmits = tcp.retransmits(*local)
            connect_ms = tcp.connect_ms.get(local)
            if connect_ms is None:
                connect_ms = tcp.connect_ms.get(other)
            events = tcp.events_for(*local)
            theirs = tcp.events_for(*other)
            if theirs:  # the other end is a socket here too
                retransmits += tcp.retransmits(*other)
                events = tuple(sorted(events + theirs, key=lambda e: e.time))
            events = events[-PER_FLOW_EVENTS:]
        if tcp is not None:
            kernel_owner, their_owner = tcp.owners.get(local), tcp.owners.get(other)
        if owned_gen != attributor.generation:
            d[10] = None if kernel_owner is not None else attributor.owner(local, None, proto)
            d[11] = None if their_owner is not None else attributor.owner(other, None, proto)
            d[9] = attributor.generation
        mine = kernel_owner or d[10]
        theirs_owner = their_owner or d[11]
        owner, peer = (mine, theirs_owner) if mine is not None else (theirs_owner, None)
        pid = comm = peer_pid = None
        if owner is not None:
            pid, comm = owner
            who = per_pid.get(pid)
            if who is None:  # /proc reads once per process per tick, at most
                who = per_pid[pid] = attributor.identity(pid, comm)
            comm = comm or who.comm
        if peer is not None and peer[0] != pid:
            peer_pid = peer[0]
            if peer_pid not in per_pid:
                per_pid[peer_pid] = attributor.identity(peer_pid, peer[1])
        return retransmits, connect_ms, pid, comm, peer_pid, events

    def _note_problems(self, lost: int | None, failed: int) -> None:
        """What went wrong since the last tick (events lost, flows refused), said once."""
        problems = []
        if lost is not None and lost > self._seen_lost:
            problems.append(f"{lost - self._seen_lost} TCP events lost (ring buffer full)")
        if failed > self._seen_failed:
            problems.append(f"{failed - self._seen_failed} new flows not recorded (map refused them)")
        self._seen_lost = lost or 0
        self._seen_failed = failed
        self._new_problem = "; ".join(problems)

    def _iface_status(self, dp: FlowsDatapath) -> tuple[IfaceStatus, ...]:
        out = []
        for name in sorted(set(dp.attachments) | set(self.iface_errors)):
            att = dp.attachments.get(name)
            out.append(
                IfaceStatus(
                    name,
                    att.ifindex if att else ifindex_of(name),
                    att.mode if att else None,
                    self.iface_errors.get(name),
                )
            )
        return tuple(out)

    def _decode(self, k: bytes) -> list[Any]:
        """What a flow's record takes from its key, worked out once while it stays on
        top; the last three slots keep the attributor's generation (-1: not asked yet;
        None: not a TCP or UDP flow, never asked) and its answers for this end and the other."""
        src, sport, dst, dport, ifindex, direction, pnum = decode_key(k)
        local = (dst, dport, src, sport) if direction == "ingress" else (src, sport, dst, dport)
        proto = proto_name(pnum)
        iface = self._names.get(ifindex) or f"if{ifindex}"
        return [
            iface,
            direction,
            proto,
            src,
            sport,
            dst,
            dport,
            local,
            proto == "tcp",
            -1 if proto in ("tcp", "udp") else None,
            None,
            None,
        ]

    def degraded_reason(self, payload: FlowsData) -> str:
        reasons = [self._new_problem] if self._new_problem else []
        # Watching every interface, one that vanishes is ordinary churn (containers):
        # shown in the payload, not a fault of the source. A requested one is.
        reasons += [
            f"{i.name}: {i.error}"
            for i in payload.ifaces
            if i.error and (self.requested or i.error != "interface disappeared")
        ]
        if payload.tcp_events_error:
            reasons.append(payload.tcp_events_error)
        return "; ".join(reasons)
