"""A cgroup v2 directory per lab part, so the lab exercises the cgroup side of identity.

Named like the systemd scopes `systemd-run --scope` makes (`<slice>/<unit>.scope`), in
the cgroup v2 hierarchy wherever it is mounted (/sys/fs/cgroup on a v2 host,
/sys/fs/cgroup/unified on a hybrid one). No controller is enabled: the directory only
names the processes. A process joins before it execs (`joiner`), so its children and
threads are in it from the start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from .errors import LabError

SLICE = "ebpftop-lab.slice"


def mountpoint(mounts: str = "/proc/self/mounts") -> str | None:
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        return None
    return None


def scope_path(unit: str, root: str | None = None) -> str:
    """The directory of `unit` (e.g. ebt-lab-canary.scope) under the lab's slice."""
    root = root or mountpoint()
    if root is None:
        raise LabError("cgroup", "no cgroup v2 hierarchy is mounted (see /proc/self/mounts)")
    return os.path.join(root, SLICE, unit)


def create(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise LabError("cgroup", f"cannot create {path}: {exc.strerror or exc}") from None
    return path


def joiner(path: str) -> Callable[[], None]:
    """A preexec_fn that moves the child into `path` (writing 0 moves the writer)."""
    procs = os.path.join(path, "cgroup.procs")

    def join() -> None:
        with open(procs, "w") as f:
            f.write("0")

    return join


def remove(path: str) -> bool:
    """Remove the directory once empty (and the slice when it is the last); False when
    processes are still in it."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))
    return True
