"""The agent's side of the stream: every snapshot the bus carries, encoded once, fanned
out to each viewer through its own bounded queue, after the last minutes of history.

A viewer that reads slowly (or not at all) never holds the agent back: its queue drops
its oldest frames and counts them, and the count reaches that viewer in the `stream`
frame sent every `HEARTBEAT` seconds. Nothing a viewer sends changes anything but its
own encoding: the agent reads one optional hello line (the token, when one is required;
`deflate`, when the viewer reads it) and then only waits for the connection to close.

A viewer that accepts deflate gets its frames through its own compressor (core/stream.py
`Deflater`), run in the server's small thread pool: zlib lets go of the GIL while it
works, so compressing one viewer's history (tens of MB) never stalls the loop that
publishes and serves the others. docs/ARCHITECTURE.md ("Agent and viewers").
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .model import Snapshot
from .stream import (
    AGENT_SOURCE,
    DEFLATE,
    HEARTBEAT,
    HELLO_MAX,
    STREAM_SOURCE,
    Deflater,
    Hello,
    StreamFeed,
    feed_snapshot,
    frame_line,
    parse_hello,
    switch_line,
)
from .stream import header_line as make_header

log = logging.getLogger(__name__)

QUEUE_MAX = 600  # frames per viewer: ~100 s of six sources at 1 Hz
HISTORY_FRAMES = 20_000
HISTORY_BYTES = 64 << 20
HELLO_TIMEOUT = 2.0  # below the viewer's SILENCE: a viewer without a token hears why
# How long the history waits for a hello that may ask for deflate: a viewer sends it as
# soon as it connects. A later one still switches, between two writes; a reader that
# says nothing gets its history this much later, plain.
HELLO_GRACE = 0.25
COMPRESS_THREADS = 2  # the machines this runs on are small; zlib is ~60 MB/s a thread
INLINE_MAX = 16 << 10  # bytes compressed on the loop itself (~0.3 ms): less than a thread's hop
WRITE_BATCH = 64  # frames written before waiting for the socket to drain
# What may sit in the kernel and in the transport for one viewer: small, so a stalled
# viewer's backlog is in its queue, where it is bounded in frames and counted.
SOCKET_BUFFER = 16 << 10
_LOCAL = frozenset({STREAM_SOURCE, AGENT_SOURCE, "recorder"})  # never sent as data


class Viewer:
    """One connected viewer: its queue, its drops, the task that writes to it."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        queue_max: int,
        name: str,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self.writer = writer
        self.name = name
        self.queue: deque[bytes] = deque()
        self.queue_max = queue_max
        self.drops = 0
        self.sent = 0  # bytes on the wire
        self.raw = 0  # bytes before compression
        self.heard = asyncio.Event()  # the hello came (or will not: the viewer sent something else)
        self.wants = ""  # the encoding the viewer accepts and the server allows ("" plain)
        self.encoding = ""  # the encoding written now
        self._pool = pool
        self._deflater: Deflater | None = None
        self._ready = asyncio.Event()
        self._seq = 0

    def hello(self, hello: Hello, *, compress: bool) -> None:
        if compress and DEFLATE in hello.accept:
            self.wants = DEFLATE
        self.heard.set()

    def offer(self, line: bytes) -> None:
        """Queue one frame; a full queue loses its oldest (the newest matters most)."""
        if len(self.queue) >= self.queue_max:
            self.queue.popleft()
            self.drops += 1
        self.queue.append(line)
        self._ready.set()

    def feed(self, viewers: int) -> bytes:
        self._seq += 1
        return frame_line(
            feed_snapshot(self._seq, StreamFeed(self.drops, len(self.queue), self.queue_max, viewers))
        )

    async def _write(self, data: bytes) -> None:
        self.raw += len(data)
        if self.wants and not self.encoding:
            # Between two writes: the line says where the plain text ends.
            switch = switch_line(self.wants)
            self.writer.write(switch)
            self.sent += len(switch)
            self._deflater, self.encoding = Deflater(), self.wants
        if self._deflater is not None and len(data) <= INLINE_MAX:
            data = self._deflater.pack(data)
        elif self._deflater is not None:
            data = await asyncio.get_running_loop().run_in_executor(self._pool, self._deflater.pack, data)
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def run(self, header: bytes, history: list[bytes], viewers: Callable[[], int]) -> None:
        """The header, the history at once, then the queue as it fills, a `stream` frame
        every HEARTBEAT. The history waits up to HELLO_GRACE for the viewer's hello."""
        self.writer.write(header)  # plain whatever follows: `agent_answers` and any reader read it
        self.sent += len(header)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.heard.wait(), HELLO_GRACE)
        for i in range(0, len(history), WRITE_BATCH):
            await self._write(b"".join(history[i : i + WRITE_BATCH]))
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                await self._write(self.feed(viewers()))
                next_beat = time.monotonic() + HEARTBEAT
            if self.queue:
                batch = [self.queue.popleft() for _ in range(min(WRITE_BATCH, len(self.queue)))]
                await self._write(b"".join(batch))
                continue
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), max(0.0, next_beat - time.monotonic()))


class StreamServer:
    """Bus subscriber and listener(s). `publish` is cheap: one encoding per snapshot."""

    def __init__(
        self,
        *,
        host: str | None = None,
        history_s: float = 300.0,
        history_frames: int = HISTORY_FRAMES,
        queue_max: int = QUEUE_MAX,
        token: str | None = None,
        compress: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host if host is not None else socket.gethostname()
        self.started = clock()
        self.history_s = history_s
        self.history_frames = history_frames
        self.queue_max = queue_max
        self.token = token
        self.compress = compress  # False: every viewer gets plain NDJSON, whatever it accepts
        self._pool = ThreadPoolExecutor(COMPRESS_THREADS, thread_name_prefix="stream-deflate")
        self._clock = clock
        self._history: deque[tuple[float, bytes]] = deque()
        self._history_bytes = 0
        self.viewers: set[Viewer] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._unix_paths: list[str] = []
        self.encode_errors = 0

    # --- the bus side -----------------------------------------------------------------

    def publish(self, snap: Snapshot) -> None:
        if snap.source in _LOCAL:
            return
        try:
            line = frame_line(snap)
        except (TypeError, ValueError) as exc:
            self.encode_errors += 1
            log.warning("not streaming a %s snapshot: %s", snap.source, exc)
            return
        self._history.append((snap.time, line))
        self._history_bytes += len(line)
        self._prune(self._clock())
        for viewer in self.viewers:
            viewer.offer(line)

    def _prune(self, now: float) -> None:
        h = self._history
        while h and (
            len(h) > self.history_frames
            or self._history_bytes > HISTORY_BYTES
            or h[0][0] < now - self.history_s
        ):
            self._history_bytes -= len(h.popleft()[1])

    def history(self) -> list[bytes]:
        self._prune(self._clock())
        return [line for _, line in self._history]

    # --- listeners --------------------------------------------------------------------

    async def listen_unix(self, path: str, *, mode: int = 0o660) -> None:
        """Listen on `path`, mode `mode`, group of the directory it is in (the directory's
        group is who may watch; created 0750 when missing)."""
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o750, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a stale socket: the caller made sure no agent answers on it
        old = os.umask(0o177)  # no moment where the socket is wider open than `mode`
        try:
            server = await asyncio.start_unix_server(self._handle, path=path, limit=HELLO_MAX + 2)
        finally:
            os.umask(old)
        os.chown(path, -1, os.stat(directory).st_gid)
        os.chmod(path, mode)
        self._servers.append(server)
        self._unix_paths.append(path)

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on host:port; returns the port (0 picks one)."""
        server = await asyncio.start_server(self._handle_tcp, host=host, port=port, limit=HELLO_MAX + 2)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._handle(reader, writer, tcp=True)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tcp: bool = False
    ) -> None:
        """One viewer. The token is asked of TCP viewers only: the unix socket's mode and
        group already say who may watch."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = _peer(writer)
        try:
            hello = None
            if tcp and self.token is not None:
                hello = await self._hello(reader)
                if not self._token_ok(hello):
                    log.warning("viewer %s refused: no valid token", peer)
                    writer.write(
                        json.dumps({"format": "ebpftop-stream", "error": "token required"}).encode() + b"\n"
                    )
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(writer.drain(), 2)
                    return
            await self._serve(peer, reader, writer, hello)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _hello(self, reader: asyncio.StreamReader) -> Hello:
        try:
            return parse_hello(await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT))
        except (TimeoutError, ValueError, asyncio.LimitOverrunError):
            return Hello()

    def _token_ok(self, hello: Hello) -> bool:
        given = hello.token.encode()
        return bool(given) and hmac.compare_digest(given, (self.token or "").encode())

    async def _serve(
        self,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: Hello | None,
    ) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        writer.transport.set_write_buffer_limits(high=SOCKET_BUFFER)
        viewer = Viewer(writer, self.queue_max, peer, self._pool)
        if hello is not None:
            viewer.hello(hello, compress=self.compress)
        # Registered and history copied in one step on the loop: no frame twice, none missed.
        self.viewers.add(viewer)
        history = self.history()
        log.info(
            "viewer %s connected (%d viewers); sending %d frames of history",
            peer,
            len(self.viewers),
            len(history),
        )
        writing = asyncio.create_task(
            viewer.run(make_header(self.host, self.started, os.getpid()), history, lambda: len(self.viewers))
        )
        closed = asyncio.create_task(self._until_closed(reader, viewer))
        try:
            await asyncio.wait({writing, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.viewers.discard(viewer)
            for t in (writing, closed):
                t.cancel()
            await asyncio.gather(writing, closed, return_exceptions=True)
            log.info(
                "viewer %s left (%d dropped, %d bytes sent%s)",
                peer,
                viewer.drops,
                viewer.sent,
                f", {viewer.encoding} of {viewer.raw}" if viewer.encoding else "",
            )

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._unix_paths.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _until_closed(self, reader: asyncio.StreamReader, viewer: Viewer) -> None:
        """The hello, if not read yet, then read and discard until the viewer closes:
        nothing else it sends means anything."""
        if not viewer.heard.is_set():
            try:
                viewer.hello(parse_hello(await reader.readline()), compress=self.compress)
            except (ValueError, asyncio.LimitOverrunError):
                viewer.heard.set()  # a first line longer than any hello: plain
        while await reader.read(4096):
            pass


def _peer(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    cred = writer.get_extra_info("socket")
    try:
        raw = cred.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12) if cred is not None else b""
        pid = int.from_bytes(raw[:4], "little") if raw else 0
    except OSError:
        pid = 0
    return f"pid {pid}" if pid else "unix"
