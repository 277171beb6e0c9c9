"""One process-wide lock around bcc compilation, and the compile's lower CPU priority.

libbcc compiles with clang/LLVM, which is not thread-safe: two `BPF(...)` constructors
running at once in different threads (flows and profiles start together, each in
`asyncio.to_thread`) fail with missing-header errors or crash the process with SIGSEGV
(iovisor/bcc#4500). Every `BPF(...)` call holds this lock; compilations queue, the event
loop does not wait.

Compiling takes seconds of CPU, at start, when the dashboard's first frames and the
canary's verdict from history need the CPU most (on a small node whose failing service
burns the rest). The compiling thread therefore runs at a lower priority (`yielding`):
it gets what they leave.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager

COMPILE_LOCK = threading.Lock()

NICE = 10  # added to the compiling thread's nice value (Linux: per thread)
CAP_SYS_NICE = 23


@contextmanager
def yielding() -> Iterator[None]:
    """The calling thread at `NICE` lower priority for the body, then as before. Left
    as it is where its priority could not be raised back (neither CAP_SYS_NICE nor
    RLIMIT_NICE allow it): a pooled thread would keep the low priority for other work."""
    tid = threading.get_native_id()
    before = _nice(tid)
    lowered = before is not None and before < 19 and may_raise_to(before) and _set(tid, before + NICE)
    try:
        yield
    finally:
        if lowered and before is not None:
            _set(tid, before)


def may_raise_to(nice: int) -> bool:
    """Whether this process may set a thread's nice value back down to `nice`."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or 20 - soft <= nice:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            caps = next((line.split()[1] for line in fh if line.startswith("CapEff:")), "0")
        return bool(int(caps, 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        return False


def _nice(tid: int) -> int | None:
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None


def _set(tid: int, nice: int) -> bool:
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice))
    except OSError:
        return False
    return True
