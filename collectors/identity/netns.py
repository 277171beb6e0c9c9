"""Network namespaces: which one a process is in, what it is called, its addresses.

A namespace is its nsfs inode (`readlink /proc/PID/ns/net` = `net:[4026532301]`). Its
name, when it has one, is the bind mount `ip netns add` (and Docker, under
/var/run/docker/netns) made for it; otherwise the text `net:[inode]`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

NAMED_DIRS = ("/run/netns", "/var/run/docker/netns")


def netns_of(pid: int | str, *, proc: str = "/proc") -> int | None:
    try:
        link = os.readlink(f"{proc}/{pid}/ns/net")
    except OSError:
        return None
    if link.startswith("net:[") and link.endswith("]"):
        try:
            return int(link[5:-1])
        except ValueError:
            return None
    return None


def named_namespaces(dirs: tuple[str, ...] = NAMED_DIRS) -> dict[int, str]:
    """inode -> name of the namespaces that have a bind mount in `dirs`."""
    out: dict[int, str] = {}
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            try:
                out.setdefault(os.stat(os.path.join(d, name)).st_ino, name)
            except OSError:
                continue
    return out


def label(inode: int, names: dict[int, str]) -> str:
    return names.get(inode) or f"net:[{inode}]"


class NetnsLabels:
    """The label of a process's network namespace, None for ebpftop's own; the named
    namespaces (`ip netns`, Docker) are listed again at most every `ttl` seconds. One
    per cache of identities (Flows) or tags (Profiles)."""

    def __init__(
        self, ttl: float = 30.0, *, clock: Callable[[], float] = time.monotonic, proc: str = "/proc"
    ) -> None:
        self.ttl, self._clock = ttl, clock
        self.host = netns_of("self", proc=proc)
        self._names: dict[int, str] = {}
        self._names_at = -1e18

    def of(self, pid: int, *, proc: str = "/proc") -> str | None:
        ns = netns_of(pid, proc=proc)
        if ns is None or ns == self.host:
            return None
        now = self._clock()
        if now - self._names_at >= self.ttl:
            self._names, self._names_at = named_namespaces(), now
        return label(ns, self._names)


def local_addresses(pid: int | str, *, proc: str = "/proc") -> set[str]:
    """The addresses of the namespace `pid` is in: IPv4 from fib_trie's LOCAL /32 host
    routes, IPv6 from if_inet6. Read through the process, so no setns is needed."""
    out: set[str] = set()
    try:
        with open(f"{proc}/{pid}/net/fib_trie", encoding="ascii", errors="replace") as f:
            last = ""
            for line in f:
                s = line.strip()
                if s.startswith(("|--", "+--")):
                    last = s[3:].strip().split(" ")[0]
                elif s.startswith("/32 host LOCAL") and last:
                    out.add(last)
    except OSError:
        pass
    try:
        import ipaddress

        with open(f"{proc}/{pid}/net/if_inet6", encoding="ascii", errors="replace") as f:
            for line in f:
                hexaddr = line.split(" ", 1)[0]
                if len(hexaddr) == 32:
                    out.add(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError):
        pass
    return out
