"""The agent stream without BPF: the codec (header, frames, the replay reader's checks),
a viewer's bounded queue, and a server and a client talking over a real unix socket
(history on connect, a stalled viewer dropped and counted while another is served,
the token, an agent that closes or falls silent); deflate asked for in the hello (same
snapshots, fewer bytes; plain for a reader that asks nothing; a bomb or corrupt data
refused by line)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import zlib

import pytest

from ebpftop.core import stream, stream_client
from ebpftop.core.bus import Bus
from ebpftop.core.model import Health, HostData, Snapshot
from ebpftop.core.store import Store
from ebpftop.core.stream import (
    MAX_LINE,
    AgentLink,
    Hello,
    Inflater,
    StreamError,
    StreamFeed,
    frame_line,
    header_line,
    hello_line,
    parse_frame,
    parse_header,
    parse_hello,
)
from ebpftop.core.stream_client import StreamClient, parse_address
from ebpftop.core.stream_server import StreamServer, Viewer

NOW = 1_800_000_000.0


def host(t: float, name: str = "node-1", seq: int = 1) -> Snapshot:
    data = HostData(name, "6.1", 10.0, 5.0, 2, (0.1, 0.2, 0.3), 1 << 30, 1 << 29, 50.0, None, None)
    return Snapshot("host", seq, t, Health(last_ok=t), data)


# --- codec ------------------------------------------------------------------------------


def test_a_frame_is_a_recording_line_and_reads_back_equal():
    snap = host(NOW)
    line = frame_line(snap)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_frame(line, 2) == snap


def test_the_header_names_the_agent_and_a_newer_version_is_refused():
    head = parse_header(header_line("node-1", NOW, 42))
    assert head == {"host": "node-1", "agent_pid": 42, "version": 1}
    newer = json.dumps({"format": "ebpftop-stream", "version": 2}).encode()
    with pytest.raises(StreamError, match=r"line 1: stream version 2 is newer"):
        parse_header(newer)
    with pytest.raises(StreamError, match=r"line 1: not an ebpftop stream \(format 'ebpftop-record'\)"):
        parse_header(b'{"format": "ebpftop-record", "version": 1}\n')
    with pytest.raises(StreamError, match=r"line 1: not an ebpftop stream \(not JSON"):
        parse_header(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(StreamError, match="the agent refused this viewer: token required"):
        parse_header(b'{"format": "ebpftop-stream", "error": "token required"}\n')
    odd = parse_header(b'{"format": "ebpftop-stream", "version": 1, "host": 7, "agent_pid": true}\n')
    assert odd["host"] == "" and odd["agent_pid"] is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (frame_line(host(NOW)).replace(b'"cpu_percent":5.0', b'"cpu_percent":NaN'), "not JSON: NaN"),
        (frame_line(host(NOW)).replace(b'"cpu_percent":5.0', b'"cpu_percent":1e999'), "out of range"),
        (frame_line(host(NOW)).replace(b'"cpu_count":2', b'"cpu_count":' + b"9" * 40), "40 digits"),
        (frame_line(host(NOW)).replace(b'"time":1800000000.0', b'"time":-5.0'), "not a Unix time"),
        (frame_line(host(NOW)).replace(b'"cpu_count":2', b'"cpu_count":"2"'), "expected an integer"),
        (b"{not json\n", "not JSON"),
        (b'{"source": "host"', "truncated JSON"),
        (b"\xff\xfe\n", "not (JSON|UTF-8)"),
        (b"[" * 100_000 + b"\n", "nested too deeply"),
        (frame_line(Snapshot("agent", 1, NOW, Health(), AgentLink("up", "x"))), "the viewer's own"),
        (frame_line(Snapshot("stream", 1, NOW, Health())), "without its payload"),
    ],
)
def test_a_hostile_frame_is_refused_naming_its_line(line, reason):
    with pytest.raises(StreamError, match=reason) as info:
        parse_frame(line, 7)
    assert str(info.value).startswith("line 7: ")


def test_markup_and_control_characters_are_data_not_refused():
    snap = host(NOW, name="[bold red]x[/]\x1b[2J")
    assert parse_frame(frame_line(snap), 2).data.hostname == "[bold red]x[/]\x1b[2J"


def test_addresses():
    assert parse_address("/run/ebpftop/agent.sock") == ("unix", "/run/ebpftop/agent.sock", 0)
    assert parse_address("agent.sock") == ("unix", "agent.sock", 0)
    assert parse_address("10.0.0.1:7070") == ("tcp", "10.0.0.1", 7070)
    assert parse_address("[2001:db8::1]:7070") == ("tcp", "2001:db8::1", 7070)
    for bad in ("", "host:0", "host:x", ":7070", "h:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


# --- the queue --------------------------------------------------------------------------


class _NoWriter:
    def write(self, data: bytes) -> None:
        raise AssertionError("offer must not write")


def test_a_full_queue_loses_its_oldest_and_counts():
    v = Viewer(_NoWriter(), 3, "t")  # type: ignore[arg-type]
    for i in range(5):
        v.offer(b"%d\n" % i)
    assert list(v.queue) == [b"2\n", b"3\n", b"4\n"] and v.drops == 2
    feed = parse_frame(v.feed(viewers=4), 1).data
    assert feed == StreamFeed(drops=2, queued=3, queue_max=3, viewers=4)


def test_history_is_bounded_by_seconds_and_frames_and_skips_local_sources():
    clock = [NOW]
    server = StreamServer(host="n", history_s=10, history_frames=5, clock=lambda: clock[0])
    for i in range(8):
        server.publish(host(NOW + i, seq=i))
    server.publish(Snapshot("agent", 1, NOW, Health(), AgentLink("up", "x")))
    assert [parse_frame(line, 1).seq for line in server.history()] == [3, 4, 5, 6, 7]
    clock[0] = NOW + 15
    assert [parse_frame(line, 1).seq for line in server.history()] == [5, 6, 7]


# --- server and client over a unix socket -----------------------------------------------


async def _until(pred, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_viewer_gets_the_history_at_once_then_live_and_a_stalled_one_is_dropped(tmp_path):
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="node-1", queue_max=10)
    await server.listen_unix(path)
    for i in range(3):
        server.publish(host(NOW + i, seq=i + 1))
    bus = Bus()
    store = Store(100)
    bus.subscribe(store)
    client = StreamClient(path, bus)
    task = asyncio.create_task(client.run())
    stalled = socket.socket(socket.AF_UNIX)
    try:
        await _until(lambda: len(store.history("host")) == 3)
        link = store.latest("agent").data
        assert (link.state, link.host) == ("up", "node-1")
        # A viewer that connects and never reads: the agent keeps publishing, never waits.
        stalled.setblocking(False)
        stalled.connect(path)
        await _until(lambda: len(server.viewers) == 2)
        big = HostData("x" * 20_000, "6.1", 1.0, 1.0, 1, (0.0, 0.0, 0.0), 1, 1, 1.0, None, None)
        for i in range(200):
            server.publish(Snapshot("host", 10 + i, NOW + 10 + i, Health(), big))
            await asyncio.sleep(0)
        await _until(lambda: store.latest("host").seq == 209)
        slow = next(v for v in server.viewers if v.drops)
        assert slow.drops > 0 and len(slow.queue) <= 10
        # A reconnect does not repeat what was shown: the store has each sample once.
        server_frames = len(store.history("host"))
        assert server_frames == len({s.seq for s in store.history("host")})
    finally:
        task.cancel()
        stalled.close()
        await server.close()


async def test_the_client_says_down_when_the_agent_closes_and_comes_back_by_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_client, "BACKOFF_MIN", 0.05)
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="a")
    await server.listen_unix(path)
    bus = Bus()
    store = Store(100)
    bus.subscribe(store)
    task = asyncio.create_task(StreamClient(path, bus).run())
    try:
        await _until(lambda: getattr(store.latest("agent"), "data", None) is not None)
        await _until(lambda: store.latest("agent").data.state == "up")
        await server.close()
        await _until(lambda: store.latest("agent").data.state == "down")
        down = store.latest("agent")
        assert down.health.state == "down" and "the connection closed" in down.health.message
        server = StreamServer(host="b")
        await server.listen_unix(path)
        server.publish(host(NOW + 100, name="b"))
        await _until(lambda: store.latest("agent").data.state == "up")
        assert store.latest("agent").data.host == "b" and store.latest("agent").data.connects == 2
        await _until(lambda: store.latest("host") is not None)
    finally:
        task.cancel()
        await server.close()


async def test_a_silent_agent_is_called_down(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_client, "SILENCE", 0.3)
    path = str(tmp_path / "hung.sock")

    async def hung(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(header_line("h", NOW, 1))
        await asyncio.sleep(30)  # open, and nothing more: no heartbeat

    srv = await asyncio.start_unix_server(hung, path=path)
    bus = Bus()
    store = Store(10)
    bus.subscribe(store)
    task = asyncio.create_task(StreamClient(path, bus).run())
    try:
        await _until(lambda: getattr(store.latest("agent"), "data", None) is not None)
        await _until(lambda: "no word from the agent" in store.latest("agent").data.problem)
        assert store.latest("agent").data.state == "down"
    finally:
        task.cancel()
        srv.close()


async def test_a_token_is_required_over_tcp_and_a_wrong_one_is_refused(tmp_path):
    server = StreamServer(host="t", token="s3cret-s3cret-s3cret")
    path = f"127.0.0.1:{await server.listen_tcp('127.0.0.1', 0)}"
    server.publish(host(NOW))
    stores = []
    tasks = []
    for token in ("wrong-wrong-wrong-wrong", "s3cret-s3cret-s3cret", None):
        bus = Bus()
        store = Store(10)
        bus.subscribe(store)
        stores.append(store)
        tasks.append(asyncio.create_task(StreamClient(path, bus, token=token).run()))
    try:
        await _until(lambda: stores[1].latest("host") is not None)
        await _until(
            lambda: (
                "token required" in getattr(stores[0].latest("agent"), "data", AgentLink("up", "")).problem
            )
        )
        assert stores[0].latest("host") is None
        await _until(
            lambda: (
                "token required" in getattr(stores[2].latest("agent"), "data", AgentLink("up", "")).problem
            )
        )
    finally:
        for t in tasks:
            t.cancel()
        await server.close()


def test_the_stream_module_reuses_the_replay_checks():
    from ebpftop.core import replay

    assert stream.MAX_LINE == replay.MAX_LINE
    assert stream._decode is replay._decode  # one reader of untrusted JSON, not two


async def test_agent_answers_only_for_an_agent(tmp_path):
    from ebpftop.core.stream_client import agent_answers

    path = str(tmp_path / "agent.sock")
    assert await asyncio.to_thread(agent_answers, path) is None  # no file
    server = StreamServer(host="node-9")
    await server.listen_unix(path)
    try:
        head = await asyncio.to_thread(agent_answers, path)
        assert head is not None and head["host"] == "node-9"
    finally:
        await server.close()
    assert not (tmp_path / "agent.sock").exists()  # the agent removes its socket

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()

    srv = await asyncio.start_unix_server(liar, path=path)
    try:
        assert await asyncio.to_thread(agent_answers, path) is None
    finally:
        srv.close()


async def test_over_tcp_with_a_token(tmp_path):
    server = StreamServer(host="tcp-node", token="t0ken-t0ken-t0ken-t0ken")
    port = await server.listen_tcp("127.0.0.1", 0)
    server.publish(host(NOW))
    bus = Bus()
    store = Store(10)
    bus.subscribe(store)
    task = asyncio.create_task(StreamClient(f"127.0.0.1:{port}", bus, token="t0ken-t0ken-t0ken-t0ken").run())
    try:
        await _until(lambda: store.latest("host") is not None)
        assert store.latest("agent").data.host == "tcp-node"
    finally:
        task.cancel()
        await server.close()


# --- compression ------------------------------------------------------------------------


def _deflated(*parts: bytes) -> bytes:
    z = zlib.compressobj()
    return b"".join(z.compress(p) + z.flush(zlib.Z_SYNC_FLUSH) for p in parts)


def test_hello_says_token_and_encodings_and_anything_else_is_an_empty_hello():
    assert parse_hello(hello_line("tok", ("deflate",))) == Hello("tok", frozenset({"deflate"}))
    assert parse_hello(hello_line(None, ("deflate", "zstd"))) == Hello("", frozenset({"deflate"}))
    assert parse_hello(b'{"token": "tok"}\n') == Hello("tok")  # an older viewer's hello
    for junk in (b"", b"GET / HTTP/1.1\r\n", b"[1]\n", b'{"accept": "deflate"}\n', b"x" * 5000):
        assert parse_hello(junk) == Hello()


def test_inflater_gives_whole_lines_as_they_complete_across_reads():
    lines = [frame_line(host(NOW + i, seq=i)) for i in range(3)]
    data = _deflated(lines[0] + lines[1][:50], lines[1][50:] + lines[2])
    inf = Inflater()
    got = [*inf.feed(data[:7], 2), *inf.feed(data[7:], 2)]
    assert got == lines and inf.pending == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            _deflated(b"{" + b" " * (MAX_LINE + 10)),
            r"line 5: inflates beyond 16777216 bytes \(a deflate bomb\?\)",
        ),
        (_deflated(b"\n", b" " * (MAX_LINE + 10) + b"\n"), r"line 6: inflates beyond"),
        (b"\x00\xff" + bytes(range(256)) * 4, r"line 5: corrupt compressed data \(.*incorrect header"),
        (zlib.compress(b"{}\n"), r"line 5: the compressed stream ended"),
    ],
    ids=["bomb", "bomb-after-a-line", "not-zlib", "ended"],
)
def test_inflater_refuses_a_bomb_and_corrupt_data_naming_the_line(data, reason):
    """The lines before the damage are still given; the damage is raised by the next feed."""
    inf = Inflater()
    with pytest.raises(StreamError, match=reason):
        good = inf.feed(data, 5)
        assert good == [b"\n"] and inf.failed is not None
        inf.feed(b"", 6)


async def _until_link(store: Store, pred) -> AgentLink:
    await _until(lambda: store.latest("agent") is not None and pred(store.latest("agent").data))
    return store.latest("agent").data


async def test_a_viewer_that_accepts_deflate_gets_the_same_snapshots_smaller(tmp_path):
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="z")
    await server.listen_unix(path)
    big = HostData("node-" + "ab" * 3000, "6.1", 1.0, 1.0, 1, (0.0, 0.0, 0.0), 1, 1, 1.0, None, None)
    sent = [Snapshot("host", i, NOW + i, Health(last_ok=NOW + i), big) for i in range(1, 41)]
    for snap in sent[:20]:
        server.publish(snap)  # history
    stores, clients, tasks = [], [], []
    for accept in (("deflate",), ()):
        bus, store = Bus(), Store(100)
        bus.subscribe(store)
        clients.append(StreamClient(path, bus, accept=accept))
        stores.append(store)
        tasks.append(asyncio.create_task(clients[-1].run()))
    try:
        for store in stores:
            await _until_link(store, lambda link: link.state == "up")
        for snap in sent[20:]:
            server.publish(snap)  # live
        for store in stores:
            await _until(lambda s=store: len(s.history("host")) == 40)
            assert list(store.history("host")) == sent
        assert [c.encoding for c in clients] == ["deflate", ""]
        by_encoding = {v.encoding: v for v in server.viewers}
        assert by_encoding["deflate"].sent * 10 < by_encoding["deflate"].raw
        assert by_encoding[""].sent >= 40 * len(frame_line(sent[0]))
    finally:
        for t in tasks:
            t.cancel()
        await server.close()


def _plain_lines(sock: socket.socket, count: int) -> tuple[list[bytes], bytes]:
    """The first `count` lines, and what came after them."""
    buf = b""
    while buf.count(b"\n") < count:
        chunk = sock.recv(1 << 16)
        assert chunk, buf
        buf += chunk
    *lines, rest = buf.split(b"\n", count)
    return [line + b"\n" for line in lines], rest


async def test_a_reader_that_says_nothing_gets_plain_ndjson_and_a_late_hello_switches_between_frames(
    tmp_path, monkeypatch
):
    """What `socat - UNIX:agent.sock` sees; and a hello that comes after the history
    started: plain lines up to the switch line, then one zlib stream (Python's zlib reads it)."""
    from ebpftop.core import stream_server

    monkeypatch.setattr(stream_server, "HELLO_GRACE", 0.01)
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="p")
    await server.listen_unix(path)
    for i in range(3):
        server.publish(host(NOW + i, seq=i + 1))

    def plain_reader() -> list[bytes]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            return _plain_lines(s, 4)[0]

    def late_hello() -> tuple[list[bytes], list[Snapshot]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            before, buf = _plain_lines(s, 4)  # the header and the history, plain: nobody asked
            s.sendall(hello_line(None, ("deflate",)))
            while stream.switch_line("deflate") not in buf:
                buf += s.recv(1 << 16)
            plain, _, rest = buf.partition(stream.switch_line("deflate"))
            # only whole plain lines (heartbeats) before the switch line
            assert {parse_frame(line, 0).source for line in plain.splitlines(keepends=True)} <= {"stream"}
            inf = Inflater()
            got = [parse_frame(line, 0) for line in inf.feed(rest, 0)]
            while not any(snap.source == "host" for snap in got):
                got += [parse_frame(line, 0) for line in inf.feed(s.recv(1 << 16), 0)]
            return before, got

    try:
        lines = await asyncio.to_thread(plain_reader)
        assert parse_header(lines[0])["host"] == "p"
        assert [parse_frame(line, 2).seq for line in lines[1:]] == [1, 2, 3]
        task = asyncio.create_task(asyncio.to_thread(late_hello))
        await _until(lambda: any(v.encoding for v in server.viewers))
        server.publish(host(NOW + 10, seq=10))
        before, after = await task
        assert [parse_frame(line, 2).seq for line in before[1:]] == [1, 2, 3]
        assert [s.seq for s in after if s.source == "host"] == [10]
    finally:
        await server.close()


async def test_an_agent_told_not_to_compress_serves_plain_to_a_viewer_that_accepts_deflate(tmp_path):
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="n", compress=False)
    await server.listen_unix(path)
    server.publish(host(NOW))
    bus, store = Bus(), Store(10)
    bus.subscribe(store)
    client = StreamClient(path, bus)
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: store.latest("host") is not None)
        assert client.encoding == "" and client.accept == ("deflate",)
    finally:
        task.cancel()
        await server.close()


async def test_an_old_viewer_with_only_a_token_still_reads_a_new_agent_over_tcp(tmp_path):
    server = StreamServer(host="old", token="t0ken-t0ken-t0ken-t0ken")
    port = await server.listen_tcp("127.0.0.1", 0)
    server.publish(host(NOW))
    bus, store = Bus(), Store(10)
    bus.subscribe(store)
    client = StreamClient(f"127.0.0.1:{port}", bus, token="t0ken-t0ken-t0ken-t0ken", accept=())
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: store.latest("host") is not None)
        assert client.encoding == ""
    finally:
        task.cancel()
        await server.close()


async def _hostile(tmp_path, body: bytes, accept=("deflate",)) -> tuple[AgentLink, Store]:
    """A fake agent: header, then `body`; the link once the viewer gives up on it."""
    path = str(tmp_path / "hostile.sock")

    async def agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(header_line("evil", NOW, 1) + body)
        await writer.drain()
        await asyncio.sleep(30)

    srv = await asyncio.start_unix_server(agent, path=path)
    bus, store = Bus(), Store(10)
    bus.subscribe(store)
    task = asyncio.create_task(StreamClient(path, bus, accept=accept).run())
    try:
        link = await _until_link(store, lambda link: link.state == "down" and link.problem)
    finally:
        task.cancel()
        srv.close()
    return link, store


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            _deflated(frame_line(host(NOW)), b'{"source":"host","x":"' + b"A" * (MAX_LINE + 10)),
            r"^line 4: inflates beyond 16777216 bytes \(a deflate bomb\?\); hung up$",
        ),
        # a block of the reserved type 3 where the next block starts; zlib gives nothing of
        # a call that fails, so the line it began in (3) is named
        (
            _deflated(frame_line(host(NOW))) + b"\x07" * 40,
            r"^line 3: corrupt compressed data \(.*invalid block type\); hung up$",
        ),
    ],
    ids=["bomb", "corrupt"],
)
async def test_a_hostile_compressed_stream_is_refused_by_line_and_the_link_goes_down(tmp_path, body, problem):
    link, store = await _hostile(tmp_path, stream.switch_line("deflate") + body)
    assert re.search(problem, link.problem), link.problem
    assert link.refused == 1
    health = store.latest("agent").health
    assert health.state == "down" and "reconnecting" in health.message


async def test_a_switch_the_viewer_did_not_ask_for_is_refused(tmp_path):
    link, _ = await _hostile(
        tmp_path, stream.switch_line("deflate") + _deflated(frame_line(host(NOW))), accept=()
    )
    assert (
        "line 2: the agent switched to encoding 'deflate', which this viewer did not ask for" in link.problem
    )


async def test_a_big_write_is_compressed_off_the_loop_and_small_ones_on_it(tmp_path, monkeypatch):
    """The history (tens of MB for a new viewer) must not hold the loop that serves the others."""
    import threading

    from ebpftop.core import stream_server

    where: list[tuple[int, bool]] = []
    pack = stream.Deflater.pack

    def spy(self: stream.Deflater, data: bytes) -> bytes:
        where.append((len(data), threading.current_thread() is threading.main_thread()))
        return pack(self, data)

    monkeypatch.setattr(stream.Deflater, "pack", spy)
    path = str(tmp_path / "agent.sock")
    server = StreamServer(host="h")
    await server.listen_unix(path)
    big = HostData(
        "x" * (stream_server.INLINE_MAX + 1), "6.1", 1.0, 1.0, 1, (0.0, 0.0, 0.0), 1, 1, 1.0, None, None
    )
    server.publish(Snapshot("host", 1, NOW, Health(), big))
    bus, store = Bus(), Store(10)
    bus.subscribe(store)
    task = asyncio.create_task(StreamClient(path, bus).run())
    try:
        await _until(lambda: store.latest("host") is not None and len(where) >= 2)
        assert store.latest("host").data == big
        assert all(on_loop == (size <= stream_server.INLINE_MAX) for size, on_loop in where), where
        assert {on_loop for _, on_loop in where} == {True, False}, where
    finally:
        task.cancel()
        await server.close()
