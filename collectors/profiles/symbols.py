"""Names for the addresses the sampler saw, at a cost that does not grow with the number
of processes.

Names are cached by the mapped file (device, inode) and offset, not per process, so a
new process of a known binary costs one read of /proc/PID/maps; JIT code and perf-map
processes go to bcc by (pid, address); addresses in no executable mapping are
"[unknown]" at once. A pid's knowledge is dropped when its executable or start time
changes. Not thread-safe: one owner (the sampler, under its lock).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .bccsyms import BccHelper, Resolved

UNKNOWN = "[unknown]"
MAX_NAMES = 200_000  # file-offset names kept before that cache starts over
MAX_PER_PROCESS = 100_000  # addresses and stacks memoised per process before its memo starts over

FileKey = tuple[int, int, int]  # (device, inode, offset in the file)


class SymbolCache(Protocol):
    """What bcc.SymbolCache offers us (the helper's RemoteCache, or a test's fake)."""

    def resolve(self, addr: int, demangle: bool) -> Resolved: ...

    def free(self) -> None: ...


class Resolver(Protocol):
    def __call__(self, pid: int, lazy: bool = ...) -> SymbolCache: ...


@dataclass
class Mapping:
    start: int
    end: int
    dev: int
    inode: int  # 0: anonymous (heap, stack, JIT code, [vdso])
    offset: int  # file offset of `start`


def parse_maps(text: str) -> list[Mapping]:
    """The executable mappings of /proc/PID/maps, sorted by start."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "x" not in parts[1]:
            continue
        try:
            lo, hi = parts[0].split("-")
            major, minor = parts[3].split(":")
            out.append(
                Mapping(
                    int(lo, 16),
                    int(hi, 16),
                    os.makedev(int(major, 16), int(minor, 16)),
                    int(parts[4]),
                    int(parts[2], 16),
                )
            )
        except ValueError:
            continue  # not the kernel's format: skipped, its addresses name as [unknown]
    out.sort(key=lambda m: m.start)
    return out


def identity(pid: int, proc: str = "/proc") -> tuple[int, int, int] | None:
    """(device, inode) of the executable and the start time: what changes when the
    pid stops being the process we knew. None when gone or a kernel thread."""
    try:
        st = os.stat(f"{proc}/{pid}/exe")
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read()
        # after the comm, which may hold spaces and parentheses: field 22 is starttime
        start = int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return (st.st_dev, st.st_ino, start)


@dataclass
class _Process:
    ident: tuple[int, int, int] | None
    maps: list[Mapping] | None  # None: /proc/PID/maps could not be read when first seen
    read_in: int  # the drain the mappings were read in
    perf_map: bool  # a JIT's /tmp/perf-PID.map names addresses outside any file
    starts: list[int] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # address -> name
    stacks: dict[tuple[int, ...], tuple[str, ...]] = field(default_factory=dict)
    bcc: SymbolCache | None = None  # made only when a name is not cached


class Symbols:
    def __init__(
        self, *, proc: str = "/proc", resolver: Resolver | None = None, donor: int | None = None
    ) -> None:
        self._proc = proc
        # resolver(pid, lazy=...) -> object with .resolve(addr, demangle) like
        # bcc.SymbolCache, and .free(); tests give a fake one. bcc's own run in a helper
        # process: see bccsyms.py for the file descriptors it closes.
        self._helper: BccHelper | None = None
        if resolver is None:
            self._helper = BccHelper()
            resolver = self._helper.cache
        self._resolver = resolver
        self._donor = os.getpid() if donor is None else donor  # -1: none
        self._procs: dict[int, _Process] = {}
        self._files: dict[FileKey, str] = {}
        self.bcc_lookups = 0  # addresses that went to bcc (the expensive path)
        self._drain = 0

    # --- per drain --------------------------------------------------------------------

    def begin(self, pids: Iterable[int]) -> list[int]:
        """Call at each drain with the pids in it: forgets a pid that is no longer the
        process we knew (exec, or the pid reused), and returns those forgotten."""
        self._drain += 1
        forgotten = []
        for pid in pids:
            p = self._procs.get(pid)
            if p is not None:
                now = identity(pid, self._proc)
                # gone (None) is still the process we knew: its names stay usable
                if now is not None and now != p.ident:
                    self.forget([pid])
                    forgotten.append(pid)
        return forgotten

    def user_stack(self, pid: int, addrs: tuple[int, ...]) -> tuple[str, ...]:
        """Names of `addrs` (as the stack table gives them, leaf first)."""
        p = self._process(pid)
        names = p.stacks.get(addrs)
        if names is None:
            if len(p.stacks) > MAX_PER_PROCESS:
                p.stacks.clear()
            names = p.stacks[addrs] = tuple(self._user(p, pid, a) for a in addrs)
        return names

    def known_stack(self, pid: int, addrs: tuple[int, ...]) -> tuple[str, ...] | None:
        """`user_stack` when every name is known already (no file, /proc or bcc read),
        else None: the caller asks `user_stack` where blocking does not matter."""
        p = self._procs.get(pid)
        if p is None:
            return None
        names = p.stacks.get(addrs)
        if names is None:
            found: list[str] = []
            for a in addrs:
                name = p.names.get(a)
                if name is None:
                    m = self._mapping(p, a) if p.maps is not None else None
                    if m is None or not m.inode:
                        return None  # maps to read again, or bcc's to name
                    name = self._files.get((m.dev, m.inode, a - m.start + m.offset))
                    if name is None:
                        return None
                found.append(name)
            if len(p.stacks) > MAX_PER_PROCESS:
                p.stacks.clear()
            names = p.stacks[addrs] = tuple(found)
        return names

    def forget(self, pids: Iterable[int]) -> None:
        for pid in pids:
            p = self._procs.pop(pid, None)
            if p is not None and p.bcc is not None:
                p.bcc.free()

    def close(self) -> None:
        self.forget(list(self._procs))
        self._files.clear()
        if self._helper is not None:
            self._helper.close()  # started again by the next name bcc must give

    def known(self) -> list[int]:
        return list(self._procs)

    # --- one address ------------------------------------------------------------------

    def _process(self, pid: int) -> _Process:
        p = self._procs.get(pid)
        if p is None:
            perf_map = any(
                os.path.exists(f)
                for f in (f"{self._proc}/{pid}/root/tmp/perf-{pid}.map", f"/tmp/perf-{pid}.map")
            )
            p = self._procs[pid] = _Process(
                identity(pid, self._proc), self._read_maps(pid), self._drain, perf_map
            )
            if p.maps is not None:
                p.starts = [m.start for m in p.maps]
        return p

    def _read_maps(self, pid: int) -> list[Mapping] | None:
        try:
            with open(f"{self._proc}/{pid}/maps") as f:
                return parse_maps(f.read())
        except OSError:
            return None

    def _mapping(self, p: _Process, addr: int) -> Mapping | None:
        if p.maps is None:
            return None
        i = bisect.bisect_right(p.starts, addr) - 1
        if i >= 0 and addr < p.maps[i].end:
            return p.maps[i]
        return None

    def _user(self, p: _Process, pid: int, addr: int) -> str:
        name = p.names.get(addr)
        if name is not None:
            return name
        if p.maps is None:
            # Gone before we first looked: bcc cannot read its mappings either and
            # would answer "[unknown]" after two slow tries.
            name = UNKNOWN
        else:
            m = self._mapping(p, addr)
            if m is None and p.read_in != self._drain and (fresh := self._read_maps(pid)) is not None:
                # mapped since we looked (dlopen); JIT code stays outside, hence once a drain
                p.maps, p.starts, p.read_in = fresh, [x.start for x in fresh], self._drain
                m = self._mapping(p, addr)
            if m is None:
                name = self._bcc(p, pid, addr) if p.perf_map else UNKNOWN
            elif not m.inode:
                name = self._bcc(p, pid, addr)
            else:
                key = (m.dev, m.inode, addr - m.start + m.offset)
                name = self._files.get(key)
                if name is None:
                    if len(self._files) > MAX_NAMES:
                        self._files.clear()
                    name = self._files[key] = self._by_donor(key) or self._bcc(p, pid, addr)
        if len(p.names) > MAX_PER_PROCESS:
            p.names.clear()
        p.names[addr] = name
        return name

    def _by_donor(self, key: FileKey) -> str | None:
        """The name at file offset `key` as our own process maps that file, if it does."""
        if self._donor < 0:
            return None
        d = self._process(self._donor)
        for _ in range(2):
            for m in d.maps or ():
                if (m.dev, m.inode) == key[:2] and m.offset <= key[2] < m.offset + m.end - m.start:
                    return self._bcc(d, self._donor, m.start + key[2] - m.offset)
            if d.read_in == self._drain or (fresh := self._read_maps(self._donor)) is None:
                return None
            d.maps, d.starts, d.read_in = fresh, [x.start for x in fresh], self._drain  # dlopen'd since
        return None

    def _bcc(self, p: _Process, pid: int, addr: int) -> str:
        self.bcc_lookups += 1
        if p.bcc is None:
            # The donor lives as long as we do: read each of its files' names once
            # rather than open the file again for every name (bcc's lazy default).
            p.bcc = self._resolver(pid, lazy=pid != self._donor)
        name, _offset, module = p.bcc.resolve(addr, True)
        if name is not None:
            return name.decode("utf-8", "replace")
        if module is not None:  # at least say which binary, as `BPF.sym(show_module=True)` does
            return f"{UNKNOWN} [{os.path.basename(module).decode('utf-8', 'replace')}]"
        return UNKNOWN
