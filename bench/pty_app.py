"""Run ebpftop in a real pseudo-terminal and read its screen like a terminal would."""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import psutil
import pyte

VENV_BIN = pathlib.Path(sys.executable).parent


class PtyApp:
    def __init__(self, argv: list[str], cols: int = 160, rows: int = 48, env: dict | None = None) -> None:
        self.cols, self.rows = cols, rows
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", **(env or {})}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.bytes_read = 0

    def pump(self, timeout: float) -> int:
        """Read whatever arrives within `timeout`; returns bytes read."""
        n = 0
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                break
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break
            if not data:
                break
            n += len(data)
            self.stream.feed(data)
            # Answer the terminal queries Textual sends (cursor position, device attrs).
            if b"\x1b[6n" in data:
                os.write(self.master, b"\x1b[1;1R")
        self.bytes_read += n
        return n

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, predicate, timeout: float) -> float | None:
        """Seconds from start until predicate(screen text) holds, or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.02)
            if predicate(self.text()):
                return time.monotonic() - self.started
        return None

    def cpu_seconds(self) -> float:
        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
            return sum(q.cpu_times().user + q.cpu_times().system for q in procs)
        except psutil.NoSuchProcess:
            return 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)
