"""A namespace's sockets by their addresses, from its /proc/PID/net socket tables.

The fallback of diag.py for a process that may not enter other network namespaces
(setns needs CAP_SYS_ADMIN, which the agent's unit and DaemonSet leave out): the
tables of /proc/PID/net are the namespace of PID's, readable without entering it.
Each read walks the kernel's whole hash (1.5 ms per TCP table on this machine when
quiet, 6-13 ms under load, see diag.py; an IPv4 lookup reads tcp and tcp6, since
dual-stack sockets take IPv4), so it is only taken where setns was refused, and each
table is read once per lookup for all of that namespace's new queries.

The answers keep diag's contract: (the socket's inode, its local end's listener's),
the listener asked for only when the socket is missing or not in `known`.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Container, Sequence

from .diag import Answer, Query

TCP_TIME_WAIT = 0x06
TCP_LISTEN = 0x0A

# (local addr, local port, remote addr, remote port) -> (state, inode)
Table = dict[tuple[str, int, str, int], tuple[int, int]]


def _address(text: str) -> tuple[str, int]:
    """'0100007F:1F90' -> ('127.0.0.1', 8080): the kernel prints each 32-bit word of
    the address as the host-order integer its network-order bytes make."""
    hexaddr, hexport = text.split(":")
    words = [int(hexaddr[i : i + 8], 16) for i in range(0, len(hexaddr), 8)]
    raw = b"".join(struct.pack("=I", w) for w in words)
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    addr = socket.inet_ntop(family, raw)
    if addr.startswith("::ffff:") and "." in addr:
        addr = addr[7:]  # a v4-mapped address: flows carry it as IPv4
    return addr, int(hexport, 16)


def parse(text: str) -> Table:
    """One /proc/net/{tcp,tcp6,udp,udp6} file; lines that do not parse are skipped."""
    out: Table = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            local, remote = _address(cols[1]), _address(cols[2])
            state, inode = int(cols[3], 16), int(cols[9])
        except (ValueError, OSError):
            continue
        out.setdefault((*local, *remote), (state, inode))
    return out


def _read(netdir: str, name: str) -> Table:
    try:
        with open(f"{netdir}/{name}") as f:
            return parse(f.read())
    except FileNotFoundError:
        return {}  # that family is not built into the kernel


def _v4_view(v4: Table, v6: Table) -> Table:
    """What IPv4 reaches: the v4 table, then dual-stack sockets of the v6 one (their
    v4-mapped entries, and wildcard listeners, which take IPv4 unless IPV6_V6ONLY)."""
    out = dict(v4)
    for (laddr, lport, raddr, rport), hit in v6.items():
        if ":" not in laddr:
            out.setdefault((laddr, lport, raddr, rport), hit)
        elif laddr == "::" and raddr == "::":
            out.setdefault(("0.0.0.0", lport, "0.0.0.0", rport), hit)
    return out


def _tables(netdir: str, queries: Sequence[Query]) -> dict[str, Table]:
    """{"tcp" | "tcp6" | "udp" | "udp6": table} for the queries' protocols and families."""
    out: dict[str, Table] = {}
    for proto in sorted({q[0] for q in queries}):
        v6 = _read(netdir, proto + "6")
        out[proto + "6"] = v6
        if any(q[0] == proto and ":" not in q[1] for q in queries):
            out[proto] = _v4_view(_read(netdir, proto), v6)
    return out


def _socket(table: Table, q: Query) -> int | None:
    """What sock_diag's exact request answers: the socket of the 4-tuple; with none, the
    socket that would take it (a listener, an unconnected UDP socket); None for a
    TIME_WAIT entry (no owner)."""
    proto, laddr, lport, raddr, rport = q
    hit = table.get((laddr, lport, raddr, rport))
    if hit is None:
        return _bound(table, laddr, lport, TCP_LISTEN if proto == "tcp" else None)
    if hit[0] == TCP_TIME_WAIT or not hit[1]:
        return None
    return hit[1]


def _bound(table: Table, laddr: str, lport: int, state: int | None) -> int | None:
    """The socket bound to the local end that takes what no exact entry takes: a TCP
    listener, or an unconnected UDP socket, on that address or on the wildcard."""
    zero = "::" if ":" in laddr else "0.0.0.0"
    for addr in (laddr, zero):
        hit = table.get((addr, lport, zero, 0))
        if hit is not None and hit[1] and (state is None or hit[0] == state):
            return hit[1]
    return None


def tables_of(ns_path: str) -> str:
    """/proc/PID/ns/net (how the walk names a namespace) -> /proc/PID/net, its tables."""
    return os.path.join(os.path.dirname(os.path.dirname(ns_path)), "net")


def lookup(netdir: str, queries: Sequence[Query], known: Container[int]) -> list[Answer]:
    """Each query's (socket inode, listener inode), as diag.lookup_here answers them."""
    tables = _tables(netdir, queries)
    out: list[Answer] = []
    for q in queries:
        table = tables[q[0] + ("6" if ":" in q[1] else "")]
        inode = _socket(table, q)
        listener = None
        if q[0] == "tcp" and (inode is None or inode not in known):
            listener = _bound(table, q[1], q[2], TCP_LISTEN)
        out.append((inode, listener))
    return out
