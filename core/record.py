"""Recording what the bus carries to a file, so `ebpftop replay FILE` can show it later.

The format (JSON lines, optional gzip), the flush policy and the size bound:
docs/ARCHITECTURE.md ("Record and replay"). Errors stop the recording and the
"recorder" source says why; they never reach the app.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

from .bus import Bus
from .model import Health, HealthState, Snapshot, register_payload, to_json

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)

FORMAT = "ebpftop-record"
VERSION = 1
SOURCE = "recorder"
FLUSH_INTERVAL = 1.0
FLUSH_BYTES = 1 << 20  # flush early when a burst fills a megabyte
_TAIL_SCAN = 4 << 20  # how far back a torn last line is looked for when appending

MB = 1024 * 1024


@dataclass(frozen=True)
class RecorderStatus:
    state: Literal["recording", "stopped", "failed"]
    path: str
    bytes: int  # counted toward the bound (see the module docstring)
    frames: int  # snapshots written this session
    limit_bytes: int
    reason: str = ""  # why it stopped or failed; empty while recording


register_payload(SOURCE, RecorderStatus)


def header(started: float, host: str) -> dict[str, object]:
    return {"format": FORMAT, "version": VERSION, "started": started, "host": host}


def is_header(obj: object) -> bool:
    return isinstance(obj, dict) and "format" in obj and "source" not in obj


def _fmt_mb(n: float) -> str:
    return f"{round(n / MB, 3):g} MB"


def _is_gzip_name(path: str) -> bool:
    return path.endswith(".gz")


class ClosingGzipFile(gzip.GzipFile):
    """A GzipFile that closes the file it was given (GzipFile leaves a passed fileobj open)."""

    def __init__(self, fileobj: BinaryIO, mode: Literal["rb", "ab"]) -> None:
        super().__init__(fileobj=fileobj, mode=mode)
        self._raw = fileobj

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _open_append(path: str) -> BinaryIO:
    """Open for appending: owner-only when created, never through a symlink.

    Recordings hold addresses, process names and hosts, so a new file is 0600; under
    sudo it is handed to the invoking user, who can then replay it without root. The
    recorder runs as root, so a symlink planted at the path must not redirect the write.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size == 0 and os.geteuid() == 0:
            uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
            if uid.isdigit() and gid.isdigit():
                os.fchown(fd, int(uid), int(gid))
        raw = os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise
    if _is_gzip_name(path):
        return ClosingGzipFile(fileobj=raw, mode="ab")  # type: ignore[return-value]
    return raw


def _gzip_damage(path: str) -> str:
    """Why the gzip stream does not decompress to its end (a crash cut it), or "".

    Reads the whole file once (well under a second at the default bound): a gzip member
    cut short cannot be told from a whole one any other way.
    """
    try:
        with gzip.open(path, "rb") as f:
            while f.read1(1 << 20):
                pass
    except (EOFError, zlib.error, OSError) as exc:
        return str(exc) or type(exc).__name__
    return ""


class Recorder:
    """A bus subscriber appending every snapshot to `path` until the bound stops it."""

    def __init__(
        self,
        path: str,
        max_bytes: int,
        *,
        bus: Bus | None = None,
        clock: Callable[[], float] = time.time,
        flush_interval: float = FLUSH_INTERVAL,
        host: str | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = int(max_bytes)
        self.bus = bus
        self._clock = clock
        self._flush_interval = flush_interval
        self._host = host if host is not None else socket.gethostname()
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self._size = 0
        self._frames = 0
        self._state: Literal["recording", "stopped", "failed"] = "stopped"
        self._reason = "not started"
        self._seq = 0
        self._flusher: asyncio.Task[None] | None = None

    # --- status -----------------------------------------------------------------------

    @property
    def status(self) -> RecorderStatus:
        return RecorderStatus(self._state, self.path, self._size, self._frames, self.max_bytes, self._reason)

    @property
    def recording(self) -> bool:
        return self._state == "recording"

    def _publish_status(self, hint: str = "") -> None:
        if self.bus is None:
            return
        closed = self._state == "stopped" and self._reason == "closed"
        state = {
            "recording": HealthState.OK,
            "stopped": HealthState.OK if closed else HealthState.DEGRADED,
            "failed": HealthState.DOWN,
        }[self._state]
        message = "" if self._state == "recording" else f"recording {self._state}: {self._reason}"
        now = self._clock()
        self._seq += 1
        last_ok = now if self._state == "recording" else None
        self.bus.publish(Snapshot(SOURCE, self._seq, now, Health(state, message, hint, last_ok), self.status))

    def _stop(self, state: Literal["stopped", "failed"], reason: str, hint: str = "") -> None:
        """Flush what fits, close, and say why. Never raises."""
        f, self._file = self._file, None
        try:
            if f is not None and state == "stopped" and self._pending:
                f.write(b"".join(self._pending))
        except OSError as exc:
            state, reason, hint = "failed", f"writing: {exc.strerror or exc}", ""
        self._pending.clear()
        self._pending_bytes = 0
        try:
            if f is not None:
                f.close()
        except OSError as exc:
            if state == "stopped":
                state, reason, hint = "failed", f"closing the file: {exc.strerror or exc}", ""
        self._state, self._reason = state, reason
        # The status goes on the bus; a log line on stderr could tear the UI's screen.
        log.info("recording %s: %s", state, reason)
        self._publish_status(hint)

    # --- opening ----------------------------------------------------------------------

    def open(self) -> bool:
        """Open (or append to) the file and write a header. False, with a status, on failure."""
        try:
            if os.path.islink(self.path):
                raise OSError(errno.ELOOP, "symbolic link")  # before repairing anything in it
            existing = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            if existing:
                problem = self._check_existing()
                if problem:
                    self._state, self._reason = "failed", problem
                    self._publish_status("choose another file or remove this one")
                    return False
                existing = os.path.getsize(self.path)
            if existing >= self.max_bytes:
                self._state = "stopped"
                self._reason = f"file already at {_fmt_mb(existing)} (limit {_fmt_mb(self.max_bytes)})"
                self._publish_status("raise --record-max-mb or record to another file")
                return False
            self._file = _open_append(self.path)
        except OSError as exc:
            self._file = None
            why = (
                "it is a symbolic link; give the file's real path"
                if exc.errno == errno.ELOOP
                else exc.strerror or exc
            )
            self._state, self._reason = "failed", f"cannot open: {why}"
            self._publish_status()
            return False
        self._size = existing
        self._frames = 0
        self._state, self._reason = "recording", ""
        line = (json.dumps(header(self._clock(), self._host), separators=(",", ":")) + "\n").encode()
        if not self._append(line):
            return False
        self.flush()
        if self.recording:
            self._publish_status()
        return self.recording

    def _check_existing(self) -> str:
        """Why appending to the existing file would be wrong, or ""; repairs a torn last line."""
        try:
            if _is_gzip_name(self.path):
                with gzip.open(self.path, "rb") as f:
                    first = f.readline(65536)
            else:
                with open(self.path, "rb") as f:
                    first = f.readline(65536)
            obj = json.loads(first)
        except (OSError, EOFError, ValueError):
            obj = None
        if not (is_header(obj) and obj.get("format") == FORMAT):
            return "the file exists and is not an ebpftop recording; not appending to it"
        if _is_gzip_name(self.path):
            damage = _gzip_damage(self.path)
            if damage:
                return (
                    f"its compressed data is cut or damaged ({damage}); "
                    "a session appended after it could not be read"
                )
        else:
            self._drop_torn_tail()
        return ""

    def _drop_torn_tail(self) -> None:
        # A crash mid-line leaves a partial record; the new header must start a fresh line
        # or the reader would stop at the join. The partial record is unreadable anyway.
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            start = max(0, size - _TAIL_SCAN)
            f.seek(start)
            tail = f.read()
            cut = tail.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
            else:
                f.write(b"\n")

    # --- writing ----------------------------------------------------------------------

    def __call__(self, snap: Snapshot) -> None:
        """Bus subscriber: buffer one snapshot; cheap, never raises."""
        if not self.recording or snap.source == SOURCE:
            return
        try:
            line = (to_json(snap) + "\n").encode()
        except (TypeError, ValueError) as exc:
            log.warning("not recording a %s snapshot: %s", snap.source, exc)
            return
        if self._append(line):
            self._frames += 1
            if (
                self._pending_bytes >= FLUSH_BYTES
                or time.monotonic() - self._last_flush >= self._flush_interval
            ):
                self.flush()

    def _append(self, line: bytes) -> bool:
        if self._size + len(line) > self.max_bytes:
            self._stop(
                "stopped",
                f"file reached {_fmt_mb(self.max_bytes)}",
                "raise --record-max-mb or record to another file",
            )
            return False
        self._pending.append(line)
        self._pending_bytes += len(line)
        self._size += len(line)
        return True

    def _write_pending(self) -> None:
        if self._file is None:
            return
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0
        self._file.flush()  # a GzipFile sync-flushes: readable up to here after a crash
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        if not self.recording:
            return
        try:
            self._write_pending()
        except OSError as exc:
            hint = "free some disk space" if exc.errno == 28 else ""
            self._stop("failed", f"writing: {exc.strerror or exc}", hint)

    def close(self) -> None:
        """Flush and close; the status says "stopped: closed". Safe to call twice."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self.recording:
            self._stop("stopped", "closed")

    async def run_flusher(self) -> None:
        """Flush every interval even when nothing arrives, and refresh the status."""
        while self.recording:
            await asyncio.sleep(self._flush_interval)
            if self._pending:
                self.flush()
            if self.recording:
                self._publish_status()


def start_recording(runtime: Runtime) -> Recorder:
    """Hook a Recorder into a running Runtime: subscribe, flush periodically, close at stop."""
    s = runtime.settings
    assert s.record
    rec = Recorder(s.record, int(s.record_max_mb * MB), bus=runtime.bus)
    if rec.open():
        runtime.bus.subscribe(rec)
        rec._flusher = asyncio.get_running_loop().create_task(rec.run_flusher(), name="recorder:flush")
    runtime.on_close(rec.close)
    return rec
