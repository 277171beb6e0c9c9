"""The process behind a local socket, in every network namespace.

`psutil.net_connections()` reads one namespace's socket table (ebpftop's own), so the
server side of every container or pod was unowned. Here:

1. one walk of /proc (`walk`) finds each process's network namespace and its socket
   inodes (/proc/PID/fd, as psutil's walk does), and each namespace's addresses
   (through one of its processes: /proc/PID/net/fib_trie, if_inet6);
2. a socket is asked for by its addresses in the namespaces that hold its local
   address (`SocketFinder.find`): an exact sock_diag request each (diag.py), which
   answers the established socket, or the listener that accepts that 4-tuple; where
   ebpftop may not enter the namespace (no CAP_SYS_ADMIN), the namespace's socket
   tables in /proc/PID/net answer the same (proctable.py).

A listener's answer is what an ended connection's server side needs: the process that
accepted it. Two namespaces listening on the same port (stable and canary) stay apart
because each is asked only for its own addresses.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field

from . import diag, proctable
from .netns import local_addresses, netns_of

Tuple4 = tuple[str, int, str, int]
Query = diag.Query  # (proto, local addr, local port, remote addr, remote port)
Place = tuple[int, int]  # (pid, netns inode)
ADDR_TTL = 30.0  # a namespace's addresses are read again after this long
Lookup = Callable[[dict[str, Sequence[Query]], Container[int]], dict[str, "list[diag.Answer] | OSError"]]


@dataclass
class ProcWalk:
    host: int | None = None  # ebpftop's own namespace
    readers: dict[int, str] = field(default_factory=dict)  # netns -> /proc/PID/ns/net
    owners: dict[int, int] = field(default_factory=dict)  # socket inode -> pid
    where: dict[str, list[int]] = field(default_factory=dict)  # local address -> namespaces
    pids: int = 0


def _socket_inodes(base: str) -> list[int]:
    try:
        fds = os.listdir(base)
    except OSError:
        return []
    out = []
    for fd in fds:
        try:
            link = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.append(int(link[8:-1]))
    return out


class AddressCache:
    """Each namespace's addresses, kept `ttl` seconds (they change far less often than
    sockets do)."""

    def __init__(self, ttl: float = ADDR_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._clock = ttl, clock
        self._cache: dict[int, tuple[float, set[str]]] = {}

    def get(self, netns: int, pid: str, proc: str) -> set[str]:
        now = self._clock()
        hit = self._cache.get(netns)
        if hit is None or hit[0] <= now:
            hit = (now + self.ttl, local_addresses(pid, proc=proc))
            self._cache[netns] = hit
        return hit[1]

    def keep_only(self, alive: Iterable[int]) -> None:
        keep = set(alive)
        for ns in [n for n in self._cache if n not in keep]:
            del self._cache[ns]


def walk(*, proc: str = "/proc", addresses: AddressCache | None = None) -> ProcWalk:
    addresses = addresses or AddressCache()
    w = ProcWalk(host=netns_of("self", proc=proc))
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        ns = netns_of(pid, proc=proc)
        if ns is None:
            continue
        w.pids += 1
        inodes = _socket_inodes(f"{proc}/{pid}/fd")
        if not inodes:
            continue
        if ns not in w.readers:
            w.readers[ns] = f"{proc}/{pid}/ns/net"
            for addr in addresses.get(ns, pid, proc):
                w.where.setdefault(addr, []).append(ns)
        ipid = int(pid)
        for inode in inodes:
            w.owners.setdefault(inode, ipid)
    addresses.keep_only(w.readers)
    if w.host is not None:
        # Every namespace has its own loopback, but ebpftop attaches to the host's
        # interfaces only: a loopback flow it sees is the host's.
        for addr in [a for a in w.where if a.startswith("127.") or a == "::1"]:
            w.where[addr] = [w.host]
    return w


def lookup(work: dict[str, Sequence[Query]], known: Container[int]) -> dict[str, list[diag.Answer] | OSError]:
    """diag's exact requests; where setns is refused (no CAP_SYS_ADMIN), that namespace's
    /proc/PID/net socket tables instead (proctable.py: slower, needs no setns)."""
    out = diag.lookup_in(work, known)
    for path, got in out.items():
        if isinstance(got, OSError) and got.errno == errno.EPERM:
            try:
                out[path] = proctable.lookup(proctable.tables_of(path), work[path], known)
            except OSError as exc:
                out[path] = OSError(exc.errno, f"{got.strerror}; its socket tables: {exc}")
    return out


class SocketFinder:
    """find(queries) after refresh(): the (pid, netns) of each query's socket."""

    def __init__(self, *, proc: str = "/proc", lookup: Lookup = lookup) -> None:
        self._proc = proc
        self._lookup = lookup
        self._addresses = AddressCache()
        self.walked = ProcWalk()
        self.errors: dict[int, str] = {}  # namespace -> why it could not be asked
        self.unplaced: set[Query] = set()

    def refresh(self) -> None:
        self.walked = walk(proc=self._proc, addresses=self._addresses)

    @property
    def problem(self) -> str | None:
        """Why some namespaces could not be asked at the last lookup (e.g. setns without
        CAP_SYS_ADMIN), for the flows pane's notices."""
        if not self.errors:
            return None
        first = next(iter(self.errors.values()))
        return f"owners not looked up in {len(self.errors)} network namespace(s): {first}"

    @property
    def namespaces(self) -> int | None:
        return len(self.walked.readers) if self.walked.pids else None

    def find(self, queries: Iterable[Query]) -> dict[Query, Place | None]:
        """Only the queries some namespace was asked for: one whose local address no
        namespace here has (the remote end of a flow) is left out. `unplaced` then holds
        those whose socket exists but is newer than the walk, with no listener to name
        it: a walk will place them."""
        w = self.walked
        out: dict[Query, Place | None] = {}
        asked: dict[int, list[Query]] = {}
        self.unplaced = set()
        for q in queries:
            for ns in w.where.get(q[1], ()):
                asked.setdefault(ns, []).append(q)
                out[q] = None
        if not asked:
            return out
        paths = {w.readers[ns]: ns for ns in asked}
        answers = self._lookup({path: asked[ns] for path, ns in paths.items()}, w.owners)
        self.errors = {}
        for path, ns in paths.items():
            got = answers.get(path)
            if isinstance(got, OSError) or got is None:
                self.errors[ns] = str(got or "not asked")
                continue
            for q, (inode, listener) in zip(asked[ns], got, strict=False):
                pid = w.owners.get(inode) if inode is not None else None
                if pid is None and listener is not None:
                    pid = w.owners.get(listener)
                if pid is not None and out[q] is None:
                    out[q] = (pid, ns)
                elif pid is None and inode is not None:
                    self.unplaced.add(q)
        self.unplaced -= {q for q, p in out.items() if p is not None}
        return out
