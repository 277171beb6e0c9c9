"""The lab's state file: everything `lab up` created, written as it is created.

Saved (atomically) after every step, so a crash at any point — of `lab up` itself or of
the machine's processes — leaves a file naming what exists, and `lab down` / the next
`lab up` remove exactly that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import LabError

FORMAT = 1


@dataclass
class ProcRecord:
    part: str
    pid: int
    create_time: float
    """psutil create_time: tells our process from a later one reusing the pid."""
    argv: list[str]
    log: str
    netns: str | None = None


@dataclass
class LabState:
    name: str
    config: dict[str, Any]
    tmpdir: str | None = None
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    processes: list[ProcRecord] = field(default_factory=list)
    complete: bool = False
    """True once every part answered; False means `lab up` did not finish."""
    started: float = 0.0

    def proc(self, part: str) -> ProcRecord | None:
        return next((p for p in self.processes if p.part == part), None)


def save(path: str, state: LabState) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    data = {"format": FORMAT, **asdict(state)}
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".state-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class StateFileError(Exception):
    pass


def load(path: str) -> LabState | None:
    """None when there is no state file; StateFileError naming the file when it is unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateFileError(f"{path}: unreadable lab state ({exc})") from None
    try:
        if data.pop("format", None) != FORMAT:
            raise ValueError("unknown format")
        procs = [ProcRecord(**p) for p in data.pop("processes", [])]
        return LabState(processes=procs, **data)
    except (TypeError, ValueError) as exc:
        raise StateFileError(f"{path}: unexpected lab state ({exc})") from None


def remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def locked(
    path: str, timeout: float = 60.0, on_wait: Callable[[], None] | None = None
) -> Iterator[Callable[[], bool]]:
    """Serialise `lab up/down` of one instance across processes (an flock on `path`).

    Yields a function that removes the lock file while still holding the lock; a waiter
    that then gets the lock on the removed file notices (inode changed) and retries.
    """
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not waited and on_wait:
                on_wait()
            waited = True
            if time.monotonic() > deadline:
                raise LabError(
                    "lab", f"another `ebpftop lab` still holds {path} after {timeout:g}s"
                ) from None
            time.sleep(0.2)
            continue
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield lambda: remove(path)
    finally:
        os.close(fd)
