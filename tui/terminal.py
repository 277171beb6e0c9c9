"""The terminal driver: Textual's Linux driver writing to its own descriptor.

Textual writes the screen to fd 2. Code in the same process may point fd 2 elsewhere
for a while (the flows collector does, so that bcc/clang compile messages, which libbcc
prints on fd 2, do not scribble over the screen). Every frame drawn meanwhile would be
lost: the screen freezes and parts of it (the footer, say) never appear. Writing to a
duplicate of the terminal descriptor, taken before any collector starts, makes the
screen immune to whatever happens to fd 2 later.

It also waits for keys without polling. Textual's input thread wakes ten times a
second to check for an escape-sequence timeout even when nothing was typed; on an
idle dashboard (a wall display for weeks) that was a sixth of its CPU. Here the
thread sleeps until a key arrives, a sequence is half read (then it ticks as Textual
does), or the driver stops (a pipe wakes it).
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual._loop import loop_last
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

TICK_S = 0.1  # Textual's own escape-timeout polling interval, while a sequence is open


class _WakingEvent(threading.Event):
    """An Event whose set() also wakes a thread blocked in select()."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd: int | None = wake_fd

    def set(self) -> None:
        super().set()
        if self._wake_fd is None:
            return
        try:
            os.write(self._wake_fd, b"x")
        except OSError:  # full (already woken) or closed at shutdown
            pass


class OwnFdDriver(LinuxDriver):
    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._own = None
        shared = self._file
        try:
            fd = os.dup(shared.fileno())
        except (OSError, ValueError, AttributeError):
            return  # no real descriptor (tests, odd embedding): keep Textual's choice
        self._own = open(fd, "w", encoding=shared.encoding or "utf-8", errors=shared.errors or "strict")
        self._file = self._own
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.exit_event = _WakingEvent(self._wake_w)

    def run_input_thread(self) -> None:
        """Textual's input loop (LinuxDriver.run_input_thread), blocking instead of polling."""
        if getattr(self, "_wake_r", None) is None:
            return super().run_input_thread()
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        def process(events, final: bool = False) -> None:
            keys = [(key, mask) for key, mask in events if key.fd == self.fileno]
            if len(keys) != len(events):
                try:
                    while os.read(self._wake_r, 64):
                        pass
                except OSError:  # drained (EAGAIN)
                    pass
            for last, (_key, mask) in loop_last(keys):
                if mask & selectors.EVENT_READ:
                    data = decode(os.read(self.fileno, 1024 * 4), final=final and last)
                    if not data:
                        break
                    for event in parser.feed(data):
                        self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        def timeout() -> float | None:
            # The parser's pending timeout (a lone ESC, say) is private to Textual;
            # without it, poll as Textual does.
            pending = getattr(parser, "_timeout_time", TICK_S)
            return None if pending is None else TICK_S

        try:
            while not self.exit_event.is_set():
                process(selector.select(timeout()))
            selector.unregister(self.fileno)
            process(selector.select(TICK_S), final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass

    def close(self) -> None:
        super().close()
        if isinstance(self.exit_event, _WakingEvent):
            self.exit_event._wake_fd = None  # the number may be reused once closed
        for name in ("_wake_r", "_wake_w"):
            fd = getattr(self, name, None)
            if fd is not None:
                setattr(self, name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._own is not None:
            try:
                self._own.close()
            except OSError:
                pass
            self._own = None
