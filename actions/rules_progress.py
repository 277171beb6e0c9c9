"""The rules change this process is applying, step by step, for the Rules pane.

A change can take seconds (the first one compiles and verifies the rules program), and
it may come from the Rules pane, the Flows pane or the quit dialog: whichever starts it,
`tracked` wraps its perform so the pane can say what is happening and since when.
`begin` and `end` run on the event loop (perform is a coroutine) and tell the
listeners; `step` comes from the change's thread and only sets the state, which the
pane reads while a change runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Perform = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Applying:
    title: str  # "Add rule"
    step: str  # "compiling and verifying the rules program ..."
    started: float  # monotonic
    ended: float | None = None  # monotonic; None while it runs
    ok: bool | None = None

    def seconds(self, now: float | None = None) -> float:
        end = self.ended if self.ended is not None else (time.monotonic() if now is None else now)
        return max(0.0, end - self.started)


class ChangeProgress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: Applying | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def state(self) -> Applying | None:
        """The change running, else the last one that ended (None: none yet)."""
        with self._lock:
            return self._state

    def listen(self, fn: Callable[[], None]) -> None:
        """`fn` is called (on the event loop) when a change begins and when it ends."""
        self._listeners.append(fn)

    def unlisten(self, fn: Callable[[], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def begin(self, title: str) -> None:
        with self._lock:
            self._state = Applying(title, "starting", time.monotonic())
        self._tell()

    def step(self, text: str) -> None:
        with self._lock:
            if self._state is not None and self._state.ended is None:
                self._state = Applying(self._state.title, text, self._state.started)

    def end(self, ok: bool) -> None:
        with self._lock:
            s = self._state
            if s is not None:
                self._state = Applying(s.title, s.step, s.started, time.monotonic(), ok)
        self._tell()

    def _tell(self) -> None:
        for fn in list(self._listeners):
            fn()


PROGRESS = ChangeProgress()  # one dashboard per process: its rules changes


def tracked(title: str, perform: Perform, progress: ChangeProgress = PROGRESS) -> Perform:
    """`perform`, telling `progress` when it begins and ends."""

    async def run() -> str:
        progress.begin(title)
        ok = False
        try:
            result = await perform()
            ok = True
            return result
        finally:
            progress.end(ok)

    return run
