"""A socket finder and an identity cache over tables a test writes, for the attribution
logic (what is asked when, what is kept); the real ones read /proc and the kernel and
are tested in tests/test_identity.py."""

from __future__ import annotations

from ebpftop.collectors.identity.model import Identity


class TableFinder:
    """refresh() reads `conns()` (psutil-like: laddr, raddr, pid); find() answers from
    the last refresh: the established socket, else a listener on the local port."""

    def __init__(self, conns):
        self.conns = conns
        self.exact: dict = {}
        self.listen: dict = {}
        self.namespaces = 1
        self.unplaced: set = set()
        self.problem: str | None = None

    def refresh(self) -> None:
        exact, listen = {}, {}
        for c in self.conns():
            if not c.pid or not c.laddr:
                continue
            if c.raddr:
                exact[(c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port)] = c.pid
            else:
                listen.setdefault(c.laddr.port, c.pid)
        self.exact, self.listen = exact, listen

    def find(self, queries):
        out = {}
        for q in queries:
            t = q[1:]
            pid = self.exact.get(t) or self.listen.get(t[1])
            out[q] = (pid, 0) if pid is not None else None
        return out


class Names:
    """Identity with comm `proc<pid>` (or the kernel's), nothing else known."""

    def get(self, pid: int, comm: str | None = None) -> Identity:
        return Identity(pid, comm or f"proc{pid}")
