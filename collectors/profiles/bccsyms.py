"""bcc's per-process symbol caches, kept in a helper process of their own.

libbcc before 0.33 (Debian 12 ships 0.26) closes a file descriptor it never opened
each time it reads a process's mappings (iovisor/bcc#5193): in our process that could
be the terminal, a BPF map or the audit log. The helper holds only its socket to us
and is restarted if bcc closes that.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

# what bcc's SymbolCache.resolve answers: (name, offset, module); name None when unknown
Resolved = tuple[bytes | None, int, bytes | None]

ANSWER_S = 30.0  # a donor cache reads every name of libLLVM: seconds, not minutes
HIGH_FD = 512  # bcc's stray close hits a number it used recently: low ones


class BccHelper:
    """Owner of one helper process. `cache(pid, lazy=...)` is a resolver for Symbols."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection[tuple[Any, ...], Any] | None = None
        self.generation = 0  # caches made in an earlier helper are made again
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._conn is not None

    def cache(self, pid: int, lazy: bool = True) -> RemoteCache:
        return RemoteCache(self, pid, lazy)

    def close(self) -> None:
        conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.wait()

    def call(self, *msg: Any) -> Any:
        """One request to the helper; the answer is whatever it sent back (unpickled)."""
        conn = self._conn if self._conn is not None else self._start()
        try:
            conn.send(msg)
            if not conn.poll(ANSWER_S):
                raise TimeoutError(f"bcc symbol helper gave no answer in {ANSWER_S:.0f} s")
            return conn.recv()
        except (OSError, EOFError):
            self.close()
            self.restarts += 1
            raise

    def _start(self) -> Connection[tuple[Any, ...], Any]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            # stderr too: bcc's warnings must not land on the dashboard's terminal
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            conn: Connection[tuple[Any, ...], Any] = Connection(os.dup(ours.fileno()))
            self._conn = conn
        self.generation += 1
        return conn


class RemoteCache:
    """bcc.SymbolCache's resolve(addr, demangle) and free(), answered by the helper."""

    def __init__(self, helper: BccHelper, pid: int, lazy: bool) -> None:
        self._helper, self.pid, self._lazy = helper, pid, lazy
        self._id: int | None = None
        self._generation = 0

    def resolve(self, addr: int, demangle: bool) -> Resolved:
        for _ in range(2):  # once more on a fresh helper if bcc closed the socket
            try:
                if self._generation != self._helper.generation or not self._helper.alive:
                    self._id = None
                    self._id = self._helper.call("new", self.pid, self._lazy)
                    self._generation = self._helper.generation
                answer: Resolved = self._helper.call("resolve", self._id, addr, demangle)
                return answer
            except TimeoutError:
                break  # a second wait as long is no better
            except (OSError, EOFError):
                continue
        return None, 0, None

    def free(self) -> None:
        if self._id is not None and self._generation == self._helper.generation and self._helper.alive:
            with contextlib.suppress(OSError, EOFError):
                self._helper.call("free", self._id)
        self._id = None


class _Cache:
    """A bcc symbol cache for one pid, freed when asked (bcc's BPF.sym keeps one per pid
    for the life of the program).

    lazy=True is bcc's default (symbol names read from the file when first asked);
    lazy=False reads them all when the module is first used. Either gives the same
    names: the same symbol types (functions and ifuncs) and debug-file lookup."""

    def __init__(self, pid: int, lazy: bool) -> None:
        import ctypes as ct

        from bcc import SymbolCache
        from bcc.libbcc import bcc_symbol_option, lib

        self.pid = pid
        self._cache = SymbolCache.__new__(SymbolCache)
        if lazy:
            self._cache.cache = lib.bcc_symcache_new(pid, None)
        else:
            stt_func, stt_gnu_ifunc = 2, 10  # <elf.h>
            opt = bcc_symbol_option(
                use_debug_file=1,
                check_debug_file_crc=1,
                lazy_symbolize=0,
                use_symbol_type=(1 << stt_func) | (1 << stt_gnu_ifunc),
            )
            self._cache.cache = lib.bcc_symcache_new(pid, ct.byref(opt))

    def resolve(self, addr: int, demangle: bool) -> Resolved:
        answer: Resolved = self._cache.resolve(addr, demangle)
        return answer

    def free(self) -> None:
        from bcc.libbcc import lib

        cache, self._cache.cache = self._cache.cache, None
        if cache:
            lib.bcc_free_symcache(cache, self.pid)


def serve(fd: int) -> None:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    os.close(fd)
    conn: Connection[Any, tuple[Any, ...]] = Connection(high)
    caches: dict[int, _Cache] = {}
    next_id = 0
    while True:
        try:
            op, *args = conn.recv()
        except (EOFError, OSError):
            return  # our owner is gone, or bcc closed the socket: it starts another helper
        if op == "new":
            next_id += 1
            caches[next_id] = _Cache(*args)
            answer: object = next_id
        elif op == "resolve":
            answer = caches[args[0]].resolve(*args[1:])
        else:  # "free"
            c = caches.pop(args[0], None)
            if c is not None:
                c.free()
            answer = None
        try:
            conn.send(answer)
        except OSError:
            return


if __name__ == "__main__":
    serve(int(sys.argv[1]))
