"""The terminal driver: Textual's Linux driver, with three changes.

- It writes to its own duplicate of the terminal descriptor: the flows collector points
  fd 2 elsewhere while bcc compiles, and frames written to fd 2 meanwhile were lost.
- It waits for keys without polling (Textual's input thread woke ten times a second:
  a sixth of an idle wall display's CPU).
- SIGTERM, SIGHUP (and a hang-up) and SIGINT end the app as `q` does, exit status
  128 + signal, terminal restored; a second signal forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import selectors
import signal
import termios
import threading
from codecs import getincrementaldecoder
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from textual._loop import loop_last
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.app import App
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver

from ebpftop.collectors.selfcost.collector import ByteMeter

TICK_S = 0.1  # Textual's own escape-timeout polling interval, while a sequence is open
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None  # as signal.signal returns
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# What Textual's stop_application_mode writes, for a forced exit that cannot wait for it:
# mouse reporting, bracketed paste and focus events off, line wrap on, Kitty keyboard
# protocol off, alternate screen off, cursor shown.
RESTORE = (
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?7h\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1004l"
)


class _WakingEvent(threading.Event):
    """An Event whose set() also wakes a thread blocked in select()."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd: int | None = wake_fd

    def set(self) -> None:
        super().set()
        if self._wake_fd is None:
            return
        with contextlib.suppress(OSError):  # full (already woken) or closed at shutdown
            os.write(self._wake_fd, b"x")


class OwnFdDriver(LinuxDriver):
    def __init__(self, app: App[Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._own: io.TextIOWrapper | None = None
        shared = self._file
        if shared is None:
            return
        try:
            fd = os.dup(shared.fileno())
        except (OSError, ValueError, AttributeError):
            return  # no real descriptor (tests, odd embedding): keep Textual's choice
        encoding, errors = shared.encoding or "utf-8", shared.errors or "strict"
        self._own = open(fd, "w", encoding=encoding, errors=errors)  # noqa: SIM115  # the driver's; close() closes it
        self._file = self._own
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.exit_event = _WakingEvent(self._wake_w)

    # --- signals ---------------------------------------------------------------------

    _saved_handlers: dict[int, _Handler] | None = None
    _signalled = False
    _exit_code: int | None = None
    _app_mode = False

    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        super().start_application_mode()  # type: ignore[no-untyped-call]  # unannotated in Textual
        self._app_mode = True
        if self._saved_handlers is None and threading.current_thread() is threading.main_thread():
            # Kept until close(), after the app's shutdown has closed the collectors:
            # a signal during that shutdown forces the exit instead of killing it halfway.
            self._saved_handlers = {signo: signal.signal(signo, self._on_signal) for signo in EXIT_SIGNALS}

    def stop_application_mode(self) -> None:
        super().stop_application_mode()
        self._app_mode = False

    def _on_signal(self, signo: int, _frame: object) -> None:
        if self._signalled:
            self._force_exit(signo)
        self._signalled = True
        self._request_exit(signo)

    def _request_exit(self, signo: int) -> None:
        """The app exits as on `q`, with 128 + signo. Safe from a signal handler or a thread."""
        if self._exit_code is not None:
            return
        self._exit_code = 128 + signo
        try:
            self._loop.call_soon_threadsafe(partial(self._app.exit, return_code=self._exit_code))
        except (AttributeError, RuntimeError):  # no loop, or closed: nothing would run the exit
            self._force_exit(signo)

    def _force_exit(self, signo: int) -> None:
        if self._app_mode:
            fd = self._own.fileno() if self._own is not None else self.fileno
            with contextlib.suppress(OSError):
                os.write(fd, RESTORE.encode())
            if self.attrs_before is not None:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(self.fileno, termios.TCSANOW, self.attrs_before)
        os._exit(128 + signo)

    def _restore_signals(self) -> None:
        saved, self._saved_handlers = self._saved_handlers, None
        for signo, handler in (saved or {}).items():
            signal.signal(signo, handler)

    # --- input -----------------------------------------------------------------------

    def run_input_thread(self) -> None:
        """Textual's input loop (LinuxDriver.run_input_thread), blocking instead of polling."""
        if getattr(self, "_wake_r", None) is None:
            return super().run_input_thread()
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        reading = True
        is_tty = os.isatty(self.fileno)

        def ended() -> None:
            # End of input: on a terminal in raw mode that is a hang-up (the SSH
            # connection dropped); from a pipe or /dev/null, only no more keys. Either
            # way stop reading, or select would return at once forever.
            nonlocal reading
            reading = False
            selector.unregister(self.fileno)
            if is_tty:
                self._request_exit(signal.SIGHUP)

        def process(events: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
            keys = [(key, mask) for key, mask in events if key.fd == self.fileno]
            if len(keys) != len(events):
                try:
                    while os.read(self._wake_r, 64):
                        pass
                except OSError:  # drained (EAGAIN)
                    pass
            for last, (_key, mask) in loop_last(keys):
                if mask & selectors.EVENT_READ:
                    try:
                        raw = os.read(self.fileno, 1024 * 4)
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        raw = b""
                    if not raw:
                        ended()
                        break
                    data = decode(raw, final=final and last)
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
            if reading:
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
        self._restore_signals()
        if isinstance(self.exit_event, _WakingEvent):
            self.exit_event._wake_fd = None  # the number may be reused once closed
        for name in ("_wake_r", "_wake_w"):
            fd = getattr(self, name, None)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._own is not None:
            with contextlib.suppress(OSError):
                self._own.close()
            self._own = None


def quiet_if_hung_up() -> None:
    """Once the terminal has hung up, point stdout and stderr at /dev/null: whatever is
    still printed (the warnings summary, Python's last flush at exit) would fail with
    EIO and turn the exit status into a traceback's 1 or 120."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")  # a no-op on a live terminal, a pipe or a file
        except OSError as exc:
            if exc.errno != errno.EIO:
                continue
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def count_writes(driver: Driver, meter: ByteMeter) -> None:
    """Every byte the driver writes to the terminal (frames, mode and sync sequences)
    is added to `meter`: the own-cost screen's terminal B/s. Wraps this driver's write,
    the one call Textual sends output through."""
    write = driver.write

    def counted(data: str) -> None:
        meter.add(len(data.encode("utf-8", "replace")))
        write(data)

    driver.write = counted  # type: ignore[method-assign]
    meter.attached = True
