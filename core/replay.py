"""Reading a recording back (`read_recording`) and playing it onto a bus (`Replayer`);
`ReplayRuntime` is the Runtime of `ebpftop replay`.

Strict at the start (no ebpftop header: `ReplayError`), forgiving at the end (a damaged
line ends the recording there, `Recording.stopped_at` says where), bounded in memory,
and nothing in the file is trusted: docs/ARCHITECTURE.md ("Record and replay").
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from .bus import Bus
from .codec import DecodeError
from .model import Health, HealthState, Snapshot, snapshot_from_dict
from .record import FORMAT, VERSION, ClosingGzipFile, is_header
from .runtime import Runtime
from .settings import Settings
from .store import Store

MAX_LINE = 16 << 20
MAX_FRAMES = 200_000  # ~55 h of one source at 1 Hz; a few hundred MB at most in memory
MAX_TIME = 1e11  # the year 5138: later (or negative) is no Unix time a recorder wrote
MAX_INT_DIGITS = 30  # a u64 has 20
_CHUNK = 1 << 16


class ReplayError(Exception):
    """The file cannot be replayed at all (missing, unreadable, not a recording).

    str() is `path:line: reason` when a line is to blame, else `path: reason`.
    """

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        self.path, self.reason, self.line = path, reason, line
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


@dataclass(frozen=True)
class Damage:
    line: int  # 1-based line number of the first line not replayed
    offset: int  # byte offset of that line in the (uncompressed) stream
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Recording:
    frames: list[Snapshot]
    stopped_at: Damage | None = None
    headers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.source for s in self.frames))


# --- reading --------------------------------------------------------------------------


class _Truncated(Exception):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


def _open(path: str) -> BinaryIO:
    try:
        f = open(path, "rb")  # noqa: SIM115  # returned open: the caller reads it and closes it
    except OSError as exc:
        raise ReplayError(path, str(exc.strerror or exc)) from None
    try:
        magic = f.read(2)
        f.seek(0)
    except OSError as exc:
        f.close()
        raise ReplayError(path, str(exc.strerror or exc)) from None
    if magic == b"\x1f\x8b":
        return ClosingGzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without "\\n", complete) for each line; raises _Truncated(reason) mid-way."""
    buf = b""
    offset = 0
    while True:
        try:
            chunk = f.read1(_CHUNK) if hasattr(f, "read1") else f.read(_CHUNK)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            # Hand out what decoded cleanly, then say why the rest is missing.
            if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
                why = f"compressed data ends early or is corrupt ({exc})"
            else:
                why = f"read error: {exc.strerror or exc}"
            if buf:
                yield offset, buf, False
            raise _Truncated(why, offset + len(buf)) from None
        if not chunk:
            break
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            yield offset, buf[start:nl], True
            offset += nl - start + 1
            start = nl + 1
        buf = buf[start:]
        if len(buf) > MAX_LINE:
            raise _Truncated(f"line longer than {MAX_LINE} bytes", offset)
    if buf:
        yield offset, buf, False


def _no_constant(name: str) -> object:
    raise ValueError(f"not JSON: {name} (a recording holds null for a missing number)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not JSON: the number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    return value


def _bounded_int(text: str) -> int:
    # A recorder writes nothing wider than a u64 counter; a longer one only costs time
    # (int() is quadratic) and overflows wherever it meets a float.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"not JSON: an integer of {len(text.lstrip('-'))} digits is out of range")
    return int(text)


def _decode(line: bytes, complete: bool) -> object:
    try:
        return json.loads(line, parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        raise ValueError("not a snapshot: nested too deeply") from None
    except json.JSONDecodeError as exc:
        if not complete:
            raise ValueError("truncated JSON (the line is cut off)") from None
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError as exc:  # _no_constant, or an integer too long to convert
        raise ValueError(str(exc) if str(exc).startswith("not JSON") else f"not JSON: {exc}") from None


def _snapshot(obj: object) -> Snapshot:
    """A decoded line as a snapshot; ValueError saying what is wrong with it."""
    try:
        snap = snapshot_from_dict(obj)
    except DecodeError as exc:
        raise ValueError(f"not a snapshot: {exc}") from None
    except Exception as exc:
        raise ValueError(f"not a snapshot: {type(exc).__name__}: {exc}") from None
    if not 0 <= snap.time <= MAX_TIME:
        raise ValueError(f"not a snapshot: .time: {snap.time!r} is not a Unix time")
    return snap


def _check_header(obj: dict[str, Any]) -> str:
    if obj.get("format") != FORMAT:
        return f"unknown format {obj.get('format')!r}"
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        return "header has no integer version"
    if version > VERSION:
        return f"recording version {version} is newer than this ebpftop reads ({VERSION})"
    return ""


def read_recording(path: str, *, max_frames: int = MAX_FRAMES) -> Recording:
    """Every snapshot up to the first damage. Raises ReplayError if nothing can be read.

    Payloads decode as the dataclasses registered for their source (core.model); the
    caller loads the sources' types first (collectors.registry.load_payload_types), or
    they stay plain dicts.
    """
    reader = _Reader(path, max_frames)
    with _open(path) as f:
        it = _lines(f)
        while reader.damage is None:
            try:
                offset, raw, complete = next(it)
            except StopIteration:
                break
            except _Truncated as exc:
                reader.damage = Damage(reader.lineno + 1, exc.offset, str(exc))
                break
            reader.read_line(offset, raw, complete)
    return reader.recording()


class _Reader:
    """What read_recording has read so far; the first damage stops it."""

    def __init__(self, path: str, max_frames: int) -> None:
        self.path, self.max_frames = path, max_frames
        self.frames: list[Snapshot] = []
        self.headers: list[dict[str, Any]] = []
        self.damage: Damage | None = None
        self.lineno = 0
        self.first = True  # no line with content yet: it must be a header, or nothing replays

    def read_line(self, offset: int, raw: bytes, complete: bool) -> None:
        self.lineno += 1
        if not raw.strip():
            return
        try:
            obj = _decode(raw, complete)
        except ValueError as exc:
            if self.first:
                raise ReplayError(self.path, f"not an ebpftop recording ({exc})", self.lineno) from None
            self.damage = Damage(self.lineno, offset, str(exc))
            return
        if self.first and not is_header(obj):
            raise ReplayError(self.path, f"not an ebpftop recording (not a {FORMAT} header)", self.lineno)
        if is_header(obj):
            self._header(obj, offset)  # type: ignore[arg-type]
            return
        try:
            snap = _snapshot(obj)
        except ValueError as exc:
            self.damage = Damage(self.lineno, offset, str(exc))
            return
        if len(self.frames) >= self.max_frames:
            self.damage = Damage(
                self.lineno,
                offset,
                f"frame limit reached ({self.max_frames} snapshots); the rest is not loaded",
            )
            return
        self.frames.append(snap)

    def _header(self, obj: dict[str, Any], offset: int) -> None:
        problem = _check_header(obj)
        if problem:
            if self.first:
                raise ReplayError(self.path, problem, self.lineno)
            self.damage = Damage(self.lineno, offset, problem)
            return
        self.first = False
        self.headers.append(obj)

    def recording(self) -> Recording:
        if self.first:
            if self.damage is not None:  # e.g. a gzip stream corrupt from its first bytes
                raise ReplayError(
                    self.path, f"not an ebpftop recording ({self.damage.reason})", self.damage.line
                )
            raise ReplayError(
                self.path,
                "empty file, not an ebpftop recording"
                if self.lineno == 0
                else f"only blank lines ({self.lineno}), not an ebpftop recording",
            )
        return Recording(self.frames, self.damage, self.headers)


# --- playing --------------------------------------------------------------------------

MIN_SPEED = 0.25
MAX_SPEED = 16.0
MAX_GAP = 5.0  # longer pauses in the recording (between appended sessions) play as this
TICK_SPAN = 1.0  # one tick never spans more than this much recorded time


def _ticks(frames: list[Snapshot]) -> list[int]:
    """End index (exclusive) of each tick: a run of frames with each source at most once.

    Sources sample independently, a few milliseconds apart; a tick groups one round of
    them so that stepping moves the whole screen one sample, not one pane at a time.
    """
    ends: list[int] = []
    seen: set[str] = set()
    start_time = None
    for i, snap in enumerate(frames):
        if start_time is not None and (snap.source in seen or snap.time - start_time > TICK_SPAN):
            ends.append(i)
            seen.clear()
            start_time = None
        if start_time is None:
            start_time = snap.time
        seen.add(snap.source)
    if frames:
        ends.append(len(frames))
    return ends


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):  # read_recording never lets one through; frames given directly might
        return "--:--"
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Replayer:
    """A recording as a position in time, played onto a bus.

    `position` is the index of the current tick (-1: nothing shown yet). Moving forward
    publishes the next tick's snapshots; any other move rebuilds the store as it was at
    that tick (history included) and republishes the latest snapshot of every source, so
    what the panes show is exactly the recorded state at that moment.
    """

    def __init__(
        self,
        frames: list[Snapshot],
        *,
        bus: Bus,
        store: Store | None = None,
        damage: Damage | str | None = None,
        history: int = 300,
    ) -> None:
        self.frames = sorted(frames, key=lambda s: s.time)  # stable: equal times keep file order
        self.bus = bus
        self.store = store
        self.damage = str(damage) if damage else None
        self.history = history
        self._ends = _ticks(self.frames)
        self.position = -1
        self.speed = 1.0
        self.paused = False
        self.sources = tuple(dict.fromkeys(s.source for s in self.frames))
        self._changed = asyncio.Event()
        self._last_move = time.monotonic()
        self.finished = asyncio.Event()  # set while the last tick is shown

    # --- where we are -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ends)

    def _start(self, tick: int) -> int:
        return self._ends[tick - 1] if tick > 0 else 0

    def tick_frames(self, tick: int) -> list[Snapshot]:
        return self.frames[self._start(tick) : self._ends[tick]]

    def tick_time(self, tick: int) -> float:
        return self.frames[self._ends[tick] - 1].time

    @property
    def at_end(self) -> bool:
        return self.position >= len(self) - 1

    @property
    def elapsed(self) -> float:
        if self.position < 0 or not self.frames:
            return 0.0
        return self.tick_time(self.position) - self.frames[0].time

    @property
    def duration(self) -> float:
        return self.frames[-1].time - self.frames[0].time if self.frames else 0.0

    def status_text(self) -> str:
        state = "paused" if self.paused else "end" if self.at_end else ""
        speed = f"×{self.speed:g}"
        return " ".join(
            p for p in ("REPLAY", f"{_clock(self.elapsed)}/{_clock(self.duration)}", speed, state) if p
        )

    # --- controls (called from key bindings, on the loop) -----------------------------

    def _poke(self) -> None:
        self._changed.set()

    def toggle_pause(self) -> bool:
        """Pause or resume; resuming at the end starts over. Returns `paused`."""
        if self.at_end and len(self) > 1:
            self.seek(0)
            self.paused = False
        else:
            self.paused = not self.paused
        self._last_move = time.monotonic()
        self._poke()
        return self.paused

    def faster(self) -> float:
        self.speed = min(MAX_SPEED, self.speed * 2)
        self._poke()
        return self.speed

    def slower(self) -> float:
        self.speed = max(MIN_SPEED, self.speed / 2)
        self._poke()
        return self.speed

    def step(self, delta: int) -> bool:
        """Pause and move `delta` ticks (clamped). True when the position changed."""
        self.paused = True
        self._poke()
        if not len(self):
            return False
        target = min(len(self) - 1, max(0, self.position + delta))
        if target == self.position:
            return False
        if target == self.position + 1:
            self._advance()
        else:
            self.seek(target)
        return True

    def seek(self, tick: int) -> None:
        """Show the recorded state at `tick`: rebuild the store, republish the latest."""
        if not len(self):
            return
        tick = min(len(self) - 1, max(0, tick))
        end = self._ends[tick]
        latest: dict[str, Snapshot] = {}
        kept: dict[str, int] = {}
        older: list[Snapshot] = []
        for snap in reversed(self.frames[:end]):
            if snap.source not in latest:
                latest[snap.source] = snap
            elif kept.get(snap.source, 0) < self.history - 1:
                kept[snap.source] = kept.get(snap.source, 0) + 1
                older.append(snap)
        if self.store is not None:
            self.store.clear()
            for snap in reversed(older):
                self.store.put(snap)
        self.position = tick
        self._last_move = time.monotonic()
        now = self.tick_time(tick)
        for source in self.sources:
            last = latest.get(source)
            if last is None:
                last = Snapshot(
                    source, 0, now, Health(HealthState.DOWN, "no data yet at this point of the recording")
                )
            self.bus.publish(last)
        self._mark_end()

    def _mark_end(self) -> None:
        if self.at_end:
            self.finished.set()
        else:
            self.finished.clear()

    def _advance(self) -> None:
        self.position += 1
        self._last_move = time.monotonic()
        for snap in self.tick_frames(self.position):
            self.bus.publish(snap)
        self._mark_end()

    def _wait_for_next(self) -> float:
        if self.position < 0:
            return 0.0
        gap = min(MAX_GAP, self.tick_time(self.position + 1) - self.tick_time(self.position))
        return max(0.0, self._last_move + gap / self.speed - time.monotonic())

    async def play(self, bus: Bus | None = None) -> None:
        """Publish ticks with the recorded timing divided by `speed`, until cancelled."""
        if bus is not None:
            self.bus = bus
        if self.position < 0 and len(self):
            self._advance()  # the first sample shows at once, even when starting paused
        while True:
            self._changed.clear()
            if self.paused or self.at_end:
                await self._changed.wait()
                continue
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=self._wait_for_next())
            except TimeoutError:
                if not self.paused and not self.at_end:
                    self._advance()


class ReplayRuntime(Runtime):
    """A Runtime whose only source is a recording: no collectors, no recorder, no actions.

    Settings are forced to read-only (`kiosk`) so the action gate refuses too, not only
    the UI; recording a replay (`record`) is dropped.
    """

    def __init__(self, settings: Settings, recording: Recording, *, path: str = "") -> None:
        super().__init__(replace(settings, record=None, kiosk=True), collectors=[])
        self.path = path
        self.recording = recording
        self.replay = Replayer(
            recording.frames,
            bus=self.bus,
            store=self.store,
            damage=recording.stopped_at,
            history=settings.history,
        )

    @classmethod
    def from_file(cls, settings: Settings, path: str) -> ReplayRuntime:
        """Raises ReplayError when the file cannot be replayed at all."""
        return cls(settings, read_recording(path), path=path)

    @property
    def read_only(self) -> bool:
        return True

    @property
    def node_name(self) -> str | None:
        """The recorded node's name from the recording's header (untrusted text)."""
        host = self.recording.headers[0].get("host") if self.recording.headers else None
        return host if isinstance(host, str) and host else None

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self.replay.play(), name="replay"))
