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
        # As an installed package runs: pip writes bytecode caches at install. This sandbox
        # sets PYTHONDONTWRITEBYTECODE, which made every launch compile ebpftop's sources
        # again (~0.3-0.4 s of a cold start measured, none of it a user's).
        full_env.pop("PYTHONDONTWRITEBYTECODE", None)
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

    def pump(self, timeout: float, render: bool = True) -> int:
        """Read whatever arrives within `timeout`; returns bytes read. `render=False` only
        counts the bytes (the screen goes stale): while measuring the app's CPU, the emulator's
        own work would compete with it for the same cores."""
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
            if render:
                self.stream.feed(data)
            # Answer the terminal queries Textual sends (cursor position, device attrs).
            if b"\x1b[6n" in data:
                os.write(self.master, b"\x1b[1;1R")
        self.bytes_read += n
        return n

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, predicate, timeout: float) -> float | None:
        """Seconds from start until predicate(screen text) holds, or None (also at once
        when the app has exited and said everything it had to say)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.pump(0.02)
            if predicate(self.text()):
                return time.monotonic() - self.started
            if not got and self.proc.poll() is not None:
                return None
        return None

    def cpu_seconds(self) -> float:
        """CPU time of the process tree. A child that exited and was reaped is counted in
        its parent's children_* times, so a helper ending mid-window is not lost from a
        difference of two readings (and a live child is not counted twice)."""
        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
            except psutil.NoSuchProcess:  # exited between the listing and the reading
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def tree(self) -> list[psutil.Process]:
        """The app and its descendants now (to kill what outlives a SIGTERM to the group)."""
        try:
            p = psutil.Process(self.proc.pid)
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)
