"""One socket of a network namespace by its addresses, through NETLINK_SOCK_DIAG.

Why not the socket tables: reading /proc/PID/net/tcp, or a sock_diag dump, walks the
kernel's whole TCP established-hash (262144 buckets here, shared by every namespace):
6-13 ms per namespace and family on this machine, whatever the socket count, so 100
namespaces would cost seconds. An exact sock_diag request is one hash lookup in the
kernel: it answers the established socket of a 4-tuple, or else the listener that
would accept it (inet_lookup), in tens of microseconds (bench/identity_bench.py).

A netlink socket belongs to the namespace it was created in, so `lookup_in` enters
each namespace (setns) in a thread made for the purpose and ended after, never a
pooled one; the thread's namespace ends with it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Container, Sequence

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
CLONE_NEWNET = 0x40000000
TCP_TIME_WAIT = 6
ALL_STATES = 0xFFFFFFFF
NOCOOKIE = b"\xff" * 8
_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states; then the socket id
_ID = struct.Struct(">HH16s16s")  # sport, dport (big-endian), src, dst; then if, cookie
_MSG = struct.Struct("=BBBB")  # family, state, timer, retrans
_INODE_AT = _NLMSG.size + _MSG.size + 48 + 16  # after the id (48) and expires..uid (4x4)

# (proto "tcp" | "udp", local addr, local port, remote addr, remote port)
Query = tuple[str, str, int, str, int]
Answer = tuple[int | None, int | None]  # (the socket's inode, its local end's listener's)


def _packed(addr: str) -> tuple[int, bytes]:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw = socket.inet_pton(family, addr)
    return family, raw.ljust(16, b"\0")


def request(q: Query, seq: int) -> bytes:
    """The exact request. For TCP the id's src is the local end; udp_diag swaps them
    ("src and dst are swapped for historical reasons", net/ipv4/udp_diag.c)."""
    proto, laddr, lport, raddr, rport = q
    family, local = _packed(laddr)
    rfamily, remote = _packed(raddr)
    if rfamily != family:
        raise ValueError(f"mixed address families in {q}")
    if proto == "tcp":
        ident = _ID.pack(lport, rport, local, remote)
        pnum = socket.IPPROTO_TCP
    else:
        ident = _ID.pack(rport, lport, remote, local)
        pnum = socket.IPPROTO_UDP
    body = _REQ.pack(family, pnum, 0, ALL_STATES) + ident + struct.pack("=I", 0) + NOCOOKIE
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def inode_of(reply: bytes) -> int | None:
    """The socket inode in a reply; None for no socket, a TIME_WAIT entry (no owner) or
    an error."""
    if len(reply) < _NLMSG.size:
        return None
    _length, kind, _f, _s, _p = _NLMSG.unpack_from(reply, 0)
    if kind == NLMSG_ERROR or len(reply) < _INODE_AT + 4:
        return None
    state = reply[_NLMSG.size + 1]
    if state == TCP_TIME_WAIT:
        return None
    inode: int = struct.unpack_from("=I", reply, _INODE_AT)[0]
    return inode or None


def lookup_here(sock: socket.socket, queries: Sequence[Query], known: Container[int]) -> list[Answer]:
    """Each query's (socket inode, listener inode). The listener of the local end is asked
    for when the kernel has no socket for the 4-tuple (an ended connection, a TIME_WAIT
    entry) or has one that `known` does not hold (a socket newer than the /proc walk:
    an accepted connection's process is its listener's)."""
    out: list[Answer] = []
    for i, q in enumerate(queries):
        inode = _ask(sock, q, 2 * i + 1)
        listener = None
        if q[0] == "tcp" and (inode is None or inode not in known):
            zero = "::" if ":" in q[3] else "0.0.0.0"
            listener = _ask(sock, (q[0], q[1], q[2], zero, 0), 2 * i + 2)
        out.append((inode, listener))
    return out


def _ask(sock: socket.socket, q: Query, seq: int) -> int | None:
    try:
        sock.send(request(q, seq))
        return inode_of(sock.recv(1 << 12))
    except ValueError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            return None
        raise


_libc = ctypes.CDLL(None, use_errno=True)


def _enter(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            why = " (entering a network namespace needs CAP_SYS_ADMIN)" if err == errno.EPERM else ""
            raise OSError(err, f"setns {path}: {os.strerror(err)}{why}")
    finally:
        os.close(fd)


def lookup_in(work: dict[str, Sequence[Query]], known: Container[int]) -> dict[str, list[Answer] | OSError]:
    """{namespace path (/proc/PID/ns/net): queries} -> each query's answer, or why that
    namespace could not be asked."""
    out: dict[str, list[Answer] | OSError] = {}

    def run() -> None:
        for path, queries in work.items():
            try:
                _enter(path)
                with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
                    sock.settimeout(2.0)
                    out[path] = lookup_here(sock, queries, known)
            except OSError as exc:
                out[path] = exc

    t = threading.Thread(target=run, name="ebpftop-sock-diag", daemon=True)
    t.start()
    t.join()
    return out
