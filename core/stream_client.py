"""The viewer's side of the stream: an agent's snapshots onto the local bus, so the same
app and panes show them (`ViewerRuntime`, as `ReplayRuntime` does for a file).

The link itself is a source, `agent` (core/stream.py `AgentLink`), published whenever it
changes: up (via which agent), down (why, and that it reconnects), a refused line (which
one, why). The agent going away is noticed when the socket closes, and a hung agent when
its every-second `stream` frame stops coming (`SILENCE`). Reconnects back off up to
`BACKOFF_MAX`; a new connection replays the agent's history at once, without repeating
what this viewer already showed.

The client accepts deflate (core/stream.py): after the agent's switch line it reads
compressed bytes through an `Inflater`, bounded as plain lines are. Corrupt data or a
line that inflates past the bound cannot be skipped (the rest of a zlib stream depends on
it), so the viewer hangs up, says which line and why, and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import replace
from typing import Any

from .bus import Bus
from .model import SOURCES, Health, HealthState, Snapshot
from .runtime import Runtime
from .settings import Settings
from .stream import (
    AGENT_SOURCE,
    DEFLATE,
    MAX_LINE,
    SILENCE,
    STREAM_SOURCE,
    AgentLink,
    Inflater,
    StreamError,
    StreamFeed,
    hello_line,
    parse_frame,
    parse_header,
    parse_switch,
)

BACKOFF_MIN = 0.5
BACKOFF_MAX = 5.0
MAX_REFUSED = 5  # refused lines on one connection before the viewer hangs up
CONNECT_TIMEOUT = 3.0
READ_CHUNK = 1 << 16  # compressed bytes read at a time


def parse_address(text: str) -> tuple[str, str, int]:
    """("unix", path, 0) or ("tcp", host, port). ValueError saying what is wrong.

    A path has a "/" (or no ":"); HOST:PORT otherwise, [v6]:PORT for IPv6."""
    text = text.strip()
    if not text:
        raise ValueError("empty address: give a unix socket path or HOST:PORT")
    if "/" in text or ":" not in text:
        return ("unix", text, 0)
    host, _, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError(f"{text!r}: no host before the port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return ("tcp", host, int(port_text))


class StreamClient:
    """Connects, reads, publishes; reconnects forever until cancelled."""

    def __init__(
        self, address: str, bus: Bus, *, token: str | None = None, accept: tuple[str, ...] = (DEFLATE,)
    ) -> None:
        self.kind, self.where, self.port = parse_address(address)
        self.address = address
        self.bus = bus
        self.token = token
        self.accept = accept  # () reads plain NDJSON only, and sends no hello without a token
        self.encoding = ""  # of the connection now: "" plain, or what the agent switched to
        self.link = AgentLink("connecting", address)
        self.seen: set[str] = set()
        self.frames = 0
        self.bytes = 0  # on the wire
        self._inflater: Inflater | None = None
        self._lines: deque[bytes] = deque()  # inflated, not read yet
        self._latest: dict[str, float] = {}  # per source: the newest time shown, across connections
        self._seq = 0
        self._lineno = 0

    # --- the link as a source ---------------------------------------------------------

    def _say(self, **changes: Any) -> None:
        self.link = replace(self.link, **changes)
        link = self.link
        if link.state == "up" and not link.problem:
            health = Health(HealthState.OK, last_ok=time.time())
        elif link.state == "up":
            health = Health(
                HealthState.DEGRADED, f"refused {link.problem}", "the agent sent something unreadable"
            )
        else:
            why = f"{link.problem}; reconnecting" if link.problem else "connecting to the agent"
            health = Health(HealthState.DOWN, why, f"reconnecting to {link.address} by itself")
        self._seq += 1
        self.bus.publish(Snapshot(AGENT_SOURCE, self._seq, time.time(), health, link))

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        self._say()
        while True:
            try:
                reader, writer = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self._say(state="down", problem=_why(exc, f"cannot connect to {self.address}"))
            else:
                try:
                    if await self._session(reader, writer):
                        backoff = BACKOFF_MIN
                finally:
                    writer.close()
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.kind == "unix":
            return await asyncio.open_unix_connection(self.where, limit=MAX_LINE + 1)
        return await asyncio.open_connection(self.where, self.port, limit=MAX_LINE + 1)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One connection until it ends; True when the agent's header was read."""
        if self.token is not None or self.accept:
            writer.write(hello_line(self.token, self.accept))
        self._lineno = 0
        self._inflater, self.encoding = None, ""
        self._lines.clear()
        try:
            raw = await self._read(reader)
            head = parse_header(raw)
        except _Ended as exc:
            self._say(state="down", problem=str(exc))
            return False
        except StreamError as exc:
            self._say(state="down", problem=str(exc))
            return False
        self._say(
            state="up",
            host=head["host"],
            agent_pid=head["agent_pid"],
            drops=0,
            refused=0,
            problem="",
            connects=self.link.connects + 1,
        )
        while True:
            try:
                raw = await self._read(reader)
                if self._inflater is None and (encoding := parse_switch(raw, self._lineno, self.accept)):
                    self._inflater, self.encoding = Inflater(), encoding
                    continue
            except _Ended as exc:
                self._say(state="down", problem=str(exc))
                return True
            except StreamError as exc:  # the compressed stream cannot be read on past this
                self._say(state="down", refused=self.link.refused + 1, problem=f"{exc}; hung up")
                return True
            try:
                snap = parse_frame(raw, self._lineno)
            except StreamError as exc:
                refused = self.link.refused + 1
                if refused >= MAX_REFUSED:
                    self._say(state="down", refused=refused, problem=f"{refused} lines refused, last {exc}")
                    return True
                self._say(refused=refused, problem=str(exc))
                continue
            self._take(snap)

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        if self._inflater is not None:
            return await self._inflated(reader, self._inflater)
        self._lineno += 1
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), SILENCE)
        except TimeoutError:
            raise _Ended(f"no word from the agent for {SILENCE:g} s (hung?)") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _Ended(f"the connection closed in the middle of line {self._lineno}") from None
            raise _Ended("the connection closed") from None
        except asyncio.LimitOverrunError:
            raise _Ended(f"line {self._lineno}: longer than {MAX_LINE} bytes; hung up") from None
        except OSError as exc:
            raise _Ended(_why(exc, "read error")) from None
        self.bytes += len(raw)
        return raw

    async def _inflated(self, reader: asyncio.StreamReader, inflater: Inflater) -> bytes:
        """The next inflated line; StreamError for what cannot be inflated."""
        while not self._lines:
            if inflater.failed is not None:
                raise inflater.failed
            try:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), SILENCE)
            except TimeoutError:
                raise _Ended(f"no word from the agent for {SILENCE:g} s (hung?)") from None
            except OSError as exc:
                raise _Ended(_why(exc, "read error")) from None
            if not data and inflater.pending:
                raise _Ended(f"the connection closed in the middle of line {self._lineno + 1}")
            if not data:
                raise _Ended("the connection closed")
            self.bytes += len(data)
            self._lines.extend(inflater.feed(data, self._lineno + 1))
        self._lineno += 1
        return self._lines.popleft()

    def _take(self, snap: Snapshot) -> None:
        if snap.source == STREAM_SOURCE:
            feed = snap.data
            if isinstance(feed, StreamFeed) and feed.drops != self.link.drops:
                self._say(drops=feed.drops)
            return
        if snap.time <= self._latest.get(snap.source, -1.0):
            return  # history this viewer already showed before a reconnect
        self._latest[snap.source] = snap.time
        self.seen.add(snap.source)
        self.frames += 1
        self.bus.publish(snap)


class _Ended(Exception):
    """The connection is over; str() says why, for the header."""


def _why(exc: BaseException, what: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what}: no answer in {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{what}: {exc.strerror}"
    return f"{what}: {exc or type(exc).__name__}"


class ViewerRuntime(Runtime):
    """A Runtime whose only source is an agent's stream: no collectors, no BPF.

    Actions still go through this process's own gate and audit log (`audited_gate`); a
    viewer is read-only only when its settings say so (`--kiosk`)."""

    def __init__(self, settings: Settings, address: str, *, token: str | None = None) -> None:
        super().__init__(settings, collectors=[])
        self.client = StreamClient(address, self.bus, token=token)

    @property
    def node_name(self) -> str | None:
        return self.client.link.host or None

    @property
    def live(self) -> bool:
        # the agent's collectors' cadence: one frame per refresh, not one per arriving
        # snapshot (six a second, measured: viewers cost more CPU than dashboards collecting)
        return True

    def producers(self) -> frozenset[str]:
        """The dashboard's sources and whatever else the agent sent: a source it has not
        sent yet is starting, not missing."""
        return frozenset((*SOURCES, *self.client.seen))

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self.client.run(), name="agent-stream"))


def agent_answers(path: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The header of the agent listening on unix socket `path`, or None when none
    answers (no file, refused, silent, not an agent). Blocking, bounded by `timeout`."""
    import os
    import socket

    if not os.path.exists(path):
        return None
    with contextlib.suppress(OSError, StreamError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf and len(buf) < 4096 and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return parse_header(buf.split(b"\n", 1)[0] + b"\n")
    return None
