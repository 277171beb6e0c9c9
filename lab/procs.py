"""Starting, checking and stopping the lab's long-running processes.

Each runs in its own session (so it outlives `ebpftop lab up` and a Ctrl-C in that
terminal), with output in a log file under the lab's temp dir. A process is known by
pid *and* start time, so a stale state file never makes us signal an unrelated process
that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

import psutil

from . import cgroups
from .errors import LabError
from .state import ProcRecord

# Children started by this process, so their exit status is read (and they are reaped)
# while we are still around; after we exit, pid + start time is what identifies them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(
    part: str,
    argv: list[str],
    *,
    log: str,
    netns: str | None = None,
    ip_bin: str = "ip",
    env: dict[str, str] | None = None,
    cgroup: str | None = None,
) -> ProcRecord:
    """`cgroup`: a cgroup v2 directory the process joins before it execs (lab/cgroups.py)."""
    full = [ip_bin, "netns", "exec", netns, *argv] if netns else argv
    with open(log, "ab") as out:
        try:
            # `ip netns exec` execs the command, so the pid is the program's own.
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                close_fds=True,
                preexec_fn=cgroups.joiner(cgroup) if cgroup else None,
            )
        except OSError as exc:
            raise LabError(part, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = 0.0
    _children[proc.pid] = proc
    return ProcRecord(part=part, pid=proc.pid, create_time=created, argv=full, log=log, netns=netns)


def exit_code(rec: ProcRecord) -> int | None:
    child = _children.get(rec.pid)
    return child.poll() if child is not None else None


def alive(rec: ProcRecord) -> bool:
    child = _children.get(rec.pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        p = psutil.Process(rec.pid)
        return abs(p.create_time() - rec.create_time) < 0.5 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def log_lines(rec: ProcRecord, lines: int = 5) -> list[str]:
    """The last non-empty lines of the part's log (of its last 4 KiB)."""
    try:
        with open(rec.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]


def log_tail(rec: ProcRecord, lines: int = 5) -> str:
    return " | ".join(log_lines(rec, lines))


def wait_ready(rec: ProcRecord, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `ready()` until true; fail early, naming the part, when the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive(rec):
            code = exit_code(rec)
            how = f"exited with code {code}" if code is not None else "exited"
            tail = log_tail(rec)
            raise LabError(
                rec.part, f"{how} while starting" + (f": {tail}" if tail else f" (log: {rec.log})")
            )
        if ready():
            return
        if time.monotonic() > deadline:
            tail = log_tail(rec)
            raise LabError(
                rec.part, f"{what} not answering after {timeout:g}s" + (f"; log: {tail}" if tail else "")
            )
        time.sleep(0.1)


def stop(rec: ProcRecord, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. True if it was running."""
    if not alive(rec):
        _reap(rec.pid)
        return False
    kill_pid(rec.pid, timeout)
    return True


def kill_pid(pid: int, timeout: float = 3.0) -> None:
    try:
        p = psutil.Process(pid)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except psutil.TimeoutExpired:
            p.kill()
            p.wait(timeout)
    except psutil.Error:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(0.5)


def find_by_argv_fragment(fragment: str) -> list[psutil.Process]:
    """Processes whose command line mentions `fragment` (the lab's temp dir)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(fragment in a for a in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.Error:
            continue
    return found
