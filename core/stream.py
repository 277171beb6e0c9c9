"""The agent's live stream, as bytes: a header line, then one snapshot a line (NDJSON).

Each snapshot is encoded exactly as a recording encodes it (core/model.py `to_json`), and
read back with the replay reader's checks (core/replay.py: finite numbers, bounded
integers and times, lines up to `MAX_LINE`): the stream is input like a file, from a
process that may be hostile or broken. Format, version 1:

```
{"format":"ebpftop-stream","version":1,"host":"node-1","started":1700000000.0,"agent_pid":42}
{"source":"host","seq":1,"time":1700000000.5,"health":{...},"data":{...}}
{"source":"stream","seq":9,"time":...,"health":{...},"data":{"drops":0,"queued":0,...}}
```

The `stream` source is the agent's word to one viewer about that viewer's own queue
(drops, depth), sent every `HEARTBEAT` seconds, so a viewer also notices an agent that
hangs with the socket open. The `agent` source never crosses the wire: it is the
viewer's own view of its link (core/stream_client.py), for the header.

Compression, asked for: a viewer's one line (`{"accept": ["deflate"], "token": ...}`, both
keys optional) may accept `deflate`. The agent then writes, between two frames, the line
`{"format":"ebpftop-stream","encoding":"deflate"}` and from the next byte on one zlib
stream for the rest of the connection, flushed (Z_SYNC_FLUSH) after every write, so each
frame inflates as soon as it arrives and the window reuses what earlier frames said. A
reader that sends nothing gets plain NDJSON, as before. The viewer inflates through
`Inflater`, which never holds more than `MAX_LINE` bytes of one line: the compressed
stream is input too (a deflate bomb or corrupt data is refused naming its line).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from .model import Health, HealthState, Snapshot, register_payload, to_json
from .replay import MAX_LINE, _decode, _snapshot

FORMAT = "ebpftop-stream"
VERSION = 1
STREAM_SOURCE = "stream"  # agent -> one viewer: that viewer's queue
AGENT_SOURCE = "agent"  # viewer-local: the link to the agent
HEARTBEAT = 1.0  # seconds between the agent's `stream` frames to each viewer
SILENCE = 3.5  # a viewer that hears nothing for this long calls the agent down
HELLO_MAX = 4096  # the only line a viewer ever sends: {"accept": [...], "token": "..."}
MAX_HEADER = 4096
DEFLATE = "deflate"
ENCODINGS = frozenset({DEFLATE})  # what an agent may switch to, when a viewer accepts it
DEFLATE_LEVEL = 6  # zlib's default: ~10x on the stream, ~60 MB/s of one core (bench/RESULTS.md)
_INFLATE_STEP = 1 << 20  # inflated bytes taken per call: a bomb is stopped at MAX_LINE, not after

__all__ = ["MAX_LINE", "AgentLink", "Hello", "Inflater", "StreamError", "StreamFeed"]


class StreamError(ValueError):
    """One line of the stream refused; str() is `line N: reason`."""

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class StreamFeed:
    """What the agent tells one viewer about its queue (the `stream` source)."""

    drops: int  # frames this viewer missed since it connected: its queue was full
    queued: int  # frames waiting for this viewer now
    queue_max: int
    viewers: int  # viewers connected to the agent, this one included


@dataclass(frozen=True)
class AgentLink:
    """The viewer's link to its agent (the `agent` source; never sent over the wire)."""

    state: Literal["connecting", "up", "down"]
    address: str
    host: str = ""  # the agent's header `host`, untrusted
    agent_pid: int | None = None
    drops: int = 0  # from the agent's last `stream` frame
    refused: int = 0  # lines refused on this connection
    problem: str = ""  # why down, or the last refused line (`line N: reason`)
    connects: int = 0  # successful connections so far


register_payload(STREAM_SOURCE, StreamFeed)
register_payload(AGENT_SOURCE, AgentLink)


# --- writing (the agent) --------------------------------------------------------------


def header(host: str, started: float, agent_pid: int) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "host": host, "started": started, "agent_pid": agent_pid}


def header_line(host: str, started: float, agent_pid: int) -> bytes:
    return (json.dumps(header(host, started, agent_pid), separators=(",", ":")) + "\n").encode()


def frame_line(snap: Snapshot) -> bytes:
    """One snapshot as a line; TypeError/ValueError when the payload does not encode."""
    return (to_json(snap) + "\n").encode()


def feed_snapshot(seq: int, feed: StreamFeed, now: float | None = None) -> Snapshot:
    now = time.time() if now is None else now
    state = HealthState.DEGRADED if feed.drops else HealthState.OK
    message = (
        f"{feed.drops} frames dropped: this viewer reads slower than the agent sends" if feed.drops else ""
    )
    return Snapshot(STREAM_SOURCE, seq, now, Health(state, message, last_ok=now), feed)


# --- reading (the viewer) -------------------------------------------------------------


def _line(raw: bytes, lineno: int) -> object:
    if len(raw) > MAX_LINE:
        raise StreamError(lineno, f"line longer than {MAX_LINE} bytes")
    complete = raw.endswith(b"\n")
    try:
        return _decode(raw.rstrip(b"\r\n"), complete)
    except ValueError as exc:
        raise StreamError(lineno, str(exc)) from None


def parse_header(raw: bytes) -> dict[str, Any]:
    """The first line: an ebpftop-stream header of a version this viewer reads."""
    if len(raw) > MAX_HEADER:
        raise StreamError(1, f"not an ebpftop stream (a first line of {len(raw)} bytes is no header)")
    try:
        obj = _line(raw, 1)
    except StreamError as exc:
        raise StreamError(1, f"not an ebpftop stream ({exc.reason})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT and isinstance(obj.get("error"), str):
        raise StreamError(1, f"the agent refused this viewer: {obj['error'][:200]}")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise StreamError(1, f"not an ebpftop stream (format {got!r})")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StreamError(1, "header has no integer version")
    if version > VERSION:
        raise StreamError(1, f"stream version {version} is newer than this ebpftop reads ({VERSION})")
    host, pid = obj.get("host"), obj.get("agent_pid")
    return {
        "host": host if isinstance(host, str) else "",
        "agent_pid": pid
        if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 1 << 32
        else None,
        "version": version,
    }


def parse_frame(raw: bytes, lineno: int) -> Snapshot:
    """One line after the header as a snapshot; StreamError naming the line otherwise.

    The viewer-local `agent` source is refused: an agent does not speak for the link."""
    obj = _line(raw, lineno)
    try:
        snap = _snapshot(obj)
    except ValueError as exc:
        raise StreamError(lineno, str(exc)) from None
    if snap.source == AGENT_SOURCE:
        raise StreamError(lineno, f"the {AGENT_SOURCE!r} source is the viewer's own; an agent cannot send it")
    if snap.source == STREAM_SOURCE and not isinstance(snap.data, StreamFeed):
        raise StreamError(lineno, f"a {STREAM_SOURCE!r} frame without its payload")
    return snap


@dataclass(frozen=True)
class Hello:
    """What a viewer's one line says: its token ("" for none) and the encodings it reads."""

    token: str = ""
    accept: frozenset[str] = frozenset()


def hello_line(token: str | None = None, accept: tuple[str, ...] = ()) -> bytes:
    """The viewer's one line; an agent older than `accept` reads only the token from it."""
    obj: dict[str, Any] = {}
    if accept:
        obj["accept"] = list(accept)
    if token is not None:
        obj["token"] = token
    return (json.dumps(obj) + "\n").encode()


def parse_hello(raw: bytes) -> Hello:
    """What a viewer sent; anything unreadable is an empty hello (never an error: just no
    token and plain NDJSON)."""
    if len(raw) > HELLO_MAX:
        return Hello()
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return Hello()
    if not isinstance(obj, dict):
        return Hello()
    token, accept = obj.get("token"), obj.get("accept")
    return Hello(
        token if isinstance(token, str) else "",
        frozenset(a for a in accept if a in ENCODINGS) if isinstance(accept, list) else frozenset(),
    )


def switch_line(encoding: str) -> bytes:
    return (json.dumps({"format": FORMAT, "encoding": encoding}, separators=(",", ":")) + "\n").encode()


def parse_switch(raw: bytes, lineno: int, asked: tuple[str, ...]) -> str | None:
    """The encoding an agent switches to on this line, None when the line is no switch;
    StreamError when it switches to one this viewer did not ask for."""
    if not raw.startswith(b'{"format"') or len(raw) > MAX_HEADER:
        return None  # a frame starts with "source": the switch line is the agent's own spelling
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "encoding" not in obj:
        return None
    encoding = obj["encoding"]
    if encoding not in asked:
        shown = encoding[:40] if isinstance(encoding, str) else type(encoding).__name__
        raise StreamError(
            lineno, f"the agent switched to encoding {shown!r}, which this viewer did not ask for"
        )
    return str(encoding)


class Deflater:
    """One connection's compressor: the window spans frames, and every `pack` ends on a
    sync flush, so what it returns inflates completely on arrival."""

    def __init__(self, level: int = DEFLATE_LEVEL) -> None:
        self._z = zlib.compressobj(level)

    def pack(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)


class Inflater:
    """Compressed bytes in, complete lines out, with the plain reader's bound on a line.

    Corrupt data, a line that inflates beyond `MAX_LINE` (a deflate bomb) or data after
    the stream's end are a StreamError naming the line they fall in: raised by `feed` at
    once when no line before them completed, else kept in `failed` (and raised by the
    next `feed`) so that the good lines before them are still read. No more than
    MAX_LINE + _INFLATE_STEP bytes are ever held inflated."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._z = zlib.decompressobj()
        self._partial = bytearray()  # the start of a line whose newline has not come yet
        self.inflated = 0  # bytes, for the link's statistics
        self.failed: StreamError | None = None

    def feed(self, data: bytes, lineno: int) -> list[bytes]:
        """The lines completed by `data`; `lineno` is the number of the first of them."""
        if self.failed is not None:
            raise self.failed
        out: list[bytes] = []
        try:
            self._inflate(data, lineno, out)
        except StreamError as exc:
            if not out:
                raise
            self.failed = exc
        return out

    def _inflate(self, data: bytes, lineno: int, out: list[bytes]) -> None:
        while True:
            try:
                chunk = self._z.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise StreamError(lineno + len(out), f"corrupt compressed data ({exc})") from None
            if self._z.eof:
                raise StreamError(lineno + len(out), "the compressed stream ended; an agent never ends it")
            data = self._z.unconsumed_tail
            self.inflated += len(chunk)
            start = 0
            while (nl := chunk.find(b"\n", start)) >= 0:
                self._partial += chunk[start : nl + 1]
                start = nl + 1
                self._check(lineno + len(out))
                out.append(bytes(self._partial))
                self._partial.clear()
            self._partial += chunk[start:]
            self._check(lineno + len(out))
            # a full step may leave output inside zlib with all input taken: ask again
            if not data and len(chunk) < _INFLATE_STEP:
                return

    @property
    def pending(self) -> int:
        """Bytes of a line begun and not ended."""
        return len(self._partial)

    def _check(self, lineno: int) -> None:
        if len(self._partial) > self.max_line + 1:
            raise StreamError(lineno, f"inflates beyond {self.max_line} bytes (a deflate bomb?)")
