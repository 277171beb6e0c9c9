"""The agent stream without BPF: the codec (header, frames, the replay reader's checks),
a viewer's bounded queue, and a server and a client talking over a real unix socket
(history on connect, a stalled viewer dropped and counted while another is served,
the token, an agent that closes or falls silent)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from ebpftop.core import stream, stream_client
from ebpftop.core.bus import Bus
from ebpftop.core.model import Health, HostData, Snapshot
from ebpftop.core.store import Store
from ebpftop.core.stream import (
    AgentLink,
    StreamError,
    StreamFeed,
    frame_line,
    header_line,
    parse_frame,
    parse_header,
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
