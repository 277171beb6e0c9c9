"""Recorder -> file -> reader -> Replayer: the data side of `--record` and `ebpftop replay`."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import pathlib

import pytest

from ebpftop.core.bus import Bus
from ebpftop.core.model import Health, HealthState, HostData, Marker, NicRate, Snapshot
from ebpftop.core.record import MB, Recorder, RecorderStatus
from ebpftop.core.replay import (
    MAX_SPEED,
    MIN_SPEED,
    Replayer,
    ReplayError,
    ReplayRuntime,
    read_recording,
)
from ebpftop.core.settings import Settings
from ebpftop.core.store import Store

DATA = pathlib.Path(__file__).parent / "data"
DEMO = DATA / "demo.rec"
T0 = 1_750_000_000.0


def host(seq: int, t: float, cpu: float = 10.0) -> Snapshot:
    data = HostData(
        hostname="node-a",
        kernel="6.1.0",
        uptime_s=1000.0 + seq,
        cpu_percent=cpu,
        cpu_count=4,
        load=(0.5, 0.4, 0.3),
        mem_total=8 << 30,
        mem_used=(2 << 30) + seq,
        mem_percent=25.0,
        net_rx_bps=None if seq == 1 else 1500.0 * seq,
        net_tx_bps=None if seq == 1 else 700.0,
        nics=() if seq == 1 else (NicRate("eth0", 1500.0 * seq, 700.0, True), NicRate("lo", 1.0, 1.0)),
    )
    return Snapshot("host", seq, t, Health(HealthState.OK, "", "", t, 0), data)


def session(n: int = 10, t0: float = T0) -> list[Snapshot]:
    """Host every second, an unknown source with raw data, a failing source, a marker."""
    frames: list[Snapshot] = []
    for i in range(n):
        frames.append(host(i + 1, t0 + i, cpu=10.0 + i))
        if i % 3 == 0:
            frames.append(
                Snapshot("future", i + 1, t0 + i + 0.2, Health(), {"x": [i, "y"], "nested": {"k": None}})
            )
    frames.append(
        Snapshot("flows", 1, t0 + 0.3, Health(HealthState.DOWN, "needs root", "run with sudo", None, 1))
    )
    frames.append(
        Snapshot("marker", 1, t0 + 4.5, Health(HealthState.OK, "", "", t0 + 4.5), Marker("spike", "me"))
    )
    return sorted(frames, key=lambda s: s.time)


def record(path, frames, max_bytes: int = 64 * MB, bus: Bus | None = None) -> Recorder:
    rec = Recorder(str(path), max_bytes, bus=bus, host="node-a", clock=lambda: T0)
    assert rec.open(), rec.status
    for snap in frames:
        rec(snap)
    rec.close()
    return rec


def lines(path) -> list[bytes]:
    return pathlib.Path(path).read_bytes().split(b"\n")


# --- recorder and reader ----------------------------------------------------------------


def test_recording_reads_back_equal_snapshots(tmp_path):
    frames = session()
    rec = record(tmp_path / "a.rec", frames)
    assert rec.status == RecorderStatus(
        "stopped",
        str(tmp_path / "a.rec"),
        os.path.getsize(tmp_path / "a.rec"),
        len(frames),
        64 * MB,
        "closed",
    )
    got = read_recording(str(tmp_path / "a.rec"))
    assert got.stopped_at is None
    assert got.frames == frames
    assert got.headers == [{"format": "ebpftop-record", "version": 1, "started": T0, "host": "node-a"}]
    # typed where a payload is registered, raw JSON data where it is not
    assert isinstance(got.frames[0].data, HostData)
    assert next(f.data for f in got.frames if f.source == "future") == {"x": [0, "y"], "nested": {"k": None}}


def test_one_compact_line_per_snapshot_and_recorder_status_not_written(tmp_path):
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    rec = Recorder(str(tmp_path / "a.rec"), 64 * MB, bus=bus, host="node-a")
    bus.subscribe(rec)
    assert rec.open()
    for snap in session(3):
        bus.publish(snap)
    rec.close()
    body = lines(tmp_path / "a.rec")
    assert body[-1] == b""  # ends with a newline
    assert len(body) - 2 == len(session(3))  # header + one line per snapshot
    assert all(b": " not in line and b", " not in line for line in body)
    statuses = [s for s in seen if s.source == "recorder"]
    assert statuses[0].data.state == "recording" and statuses[-1].data.state == "stopped"
    assert b'"recorder"' not in (tmp_path / "a.rec").read_bytes()


def test_size_bound_stops_recording_keeps_file_valid_and_says_why(tmp_path):
    path = tmp_path / "small.rec"
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    frames = session(40)
    limit = 4000
    rec = Recorder(str(path), limit, bus=bus)
    assert rec.open()
    for snap in frames:
        rec(snap)
    assert rec.status.state == "stopped"
    assert "file reached" in rec.status.reason
    size = os.path.getsize(path)
    assert size <= limit
    for snap in frames[:5]:  # nothing more is written once stopped
        rec(snap)
    rec.flush()
    assert os.path.getsize(path) == size
    last = [s for s in seen if s.source == "recorder"][-1]
    assert last.health.state == HealthState.DEGRADED
    assert last.health.message == rec.status.reason.join(["recording stopped: ", ""])
    assert last.health.hint  # tells the user what to do
    got = read_recording(str(path))
    assert got.stopped_at is None
    assert got.frames == frames[: rec.status.frames]
    assert 0 < rec.status.frames < len(frames)
    rec.close()  # closing after a stop keeps the reason
    assert "file reached" in rec.status.reason


def test_existing_file_already_over_the_bound_is_left_alone(tmp_path):
    path = tmp_path / "full.rec"
    record(path, session(5))
    before = path.read_bytes()
    rec = Recorder(str(path), len(before))
    assert not rec.open()
    assert rec.status.state == "stopped" and "already at" in rec.status.reason
    assert path.read_bytes() == before


def test_appending_adds_a_session_and_both_read_back(tmp_path):
    path = tmp_path / "a.rec"
    first, second = session(4), session(3, t0=T0 + 100)
    record(path, first)
    record(path, second)
    got = read_recording(str(path))
    assert got.stopped_at is None
    assert len(got.headers) == 2
    assert got.frames == first + second


def test_append_after_a_crash_drops_the_torn_line_and_reads_on(tmp_path):
    path = tmp_path / "a.rec"
    first = session(4)
    record(path, first)
    torn = path.read_bytes()
    path.write_bytes(torn[: len(torn) - 40])  # crash mid-way through the last line
    second = session(2, t0=T0 + 100)
    record(path, second)
    got = read_recording(str(path))
    assert got.stopped_at is None
    assert got.frames == first[:-1] + second


def test_refuses_to_append_to_a_file_that_is_not_a_recording(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("important notes\n")
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    rec = Recorder(str(path), 64 * MB, bus=bus)
    assert not rec.open()
    rec(host(1, T0))
    rec.close()
    assert path.read_text() == "important notes\n"
    assert rec.status.state == "failed" and "not an ebpftop recording" in rec.status.reason
    assert seen[-1].source == "recorder" and seen[-1].health.state == HealthState.DOWN


def test_disk_full_fails_visibly_without_raising():
    need_dev_full = os.path.exists("/dev/full")
    if not need_dev_full:
        pytest.skip("no /dev/full")
    bus = Bus()
    seen: list[Snapshot] = []
    bus.subscribe(seen.append)
    rec = Recorder("/dev/full", 64 * MB, bus=bus)
    rec.open()  # the header write fails on flush
    for snap in session(3):
        rec(snap)
    rec.flush()
    rec.close()
    assert rec.status.state == "failed"
    assert "No space left on device" in rec.status.reason
    assert seen[-1].health.state == HealthState.DOWN
    assert seen[-1].health.hint == "free some disk space"


def test_unwritable_path_fails_with_the_reason(tmp_path):
    rec = Recorder(str(tmp_path / "missing-dir" / "a.rec"), 64 * MB)
    assert not rec.open()
    assert rec.status.state == "failed"
    assert "No such file or directory" in rec.status.reason
    assert not (tmp_path / "missing-dir").exists()


def test_new_file_is_owner_only_and_given_to_the_sudo_user(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_UID", "4242")
    monkeypatch.setenv("SUDO_GID", "4343")
    path = tmp_path / "a.rec"
    record(path, session(2))
    st = path.stat()
    assert st.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4242, 4343)
    else:
        assert st.st_uid == os.geteuid()  # only root can give a file away


def test_never_writes_through_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    link = tmp_path / "a.rec"
    link.symlink_to(target)
    rec = Recorder(str(link), 64 * MB)
    assert not rec.open()
    assert rec.status.state == "failed" and "symbolic link" in rec.status.reason
    assert not target.exists()


async def test_flusher_makes_data_readable_while_recording(tmp_path):
    path = tmp_path / "live.rec"
    rec = Recorder(str(path), 64 * MB, flush_interval=0.02)
    assert rec.open()
    rec._last_flush += 3600  # so the subscriber does not flush by itself
    rec(host(1, T0))
    assert len(read_recording(str(path)).frames) == 0  # still buffered
    task = asyncio.create_task(rec.run_flusher())
    try:
        async with asyncio.timeout(10):
            while not read_recording(str(path)).frames:
                await asyncio.sleep(0.01)
    finally:
        rec.close()
        await asyncio.gather(task, return_exceptions=True)
    assert read_recording(str(path)).frames == [host(1, T0)]


def test_gzip_round_trip(tmp_path):
    path = tmp_path / "a.rec.gz"
    frames = session()
    record(path, frames)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(path.read_bytes()).startswith(b'{"format":"ebpftop-record"')
    got = read_recording(str(path))
    assert got.stopped_at is None and got.frames == frames
    record(path, session(2, t0=T0 + 100))  # a second gzip member
    assert len(read_recording(str(path)).headers) == 2


def test_appending_to_a_cut_gzip_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "a.rec.gz"
    record(path, session(30))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 50])
    before = path.read_bytes()
    rec = Recorder(str(path), 64 * MB)
    assert not rec.open()
    assert rec.status.state == "failed" and "cut or damaged" in rec.status.reason
    assert path.read_bytes() == before


def test_truncated_gzip_replays_up_to_the_damage(tmp_path):
    path = tmp_path / "a.rec.gz"
    frames = session(60)
    record(path, frames)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    got = read_recording(str(path))
    assert got.stopped_at is not None
    assert 0 < len(got.frames) < len(frames)
    assert got.frames == frames[: len(got.frames)]
    assert got.stopped_at.line == len(got.frames) + 2  # header, frames, then the damage


def test_file_cut_mid_line_replays_up_to_it(tmp_path):
    frames = session()
    path = tmp_path / "a.rec"
    record(path, frames)
    body = lines(path)
    cut_line = 7  # 1-based: header is line 1, so frames[:5] survive
    offset = sum(len(b) + 1 for b in body[: cut_line - 1])
    path.write_bytes(path.read_bytes()[: offset + len(body[cut_line - 1]) // 2])
    got = read_recording(str(path))
    assert got.frames == frames[: cut_line - 2]
    assert got.stopped_at.line == cut_line
    assert got.stopped_at.offset == offset
    assert "truncated" in got.stopped_at.reason
    assert str(got.stopped_at).startswith(f"line {cut_line}: ")


DAMAGED_AT = 30  # scripts/make_demo_recording.py cuts damaged.rec in this line


def test_committed_damaged_fixture_is_the_demo_cut_mid_line():
    demo = read_recording(str(DEMO))
    damaged = read_recording(str(DATA / "damaged.rec"))
    assert demo.stopped_at is None
    assert damaged.stopped_at.line == DAMAGED_AT
    assert damaged.frames == demo.frames[: DAMAGED_AT - 2]


def test_demo_decodes_typed_in_a_fresh_interpreter():
    """A replay runs no collectors; what the replay verb does before reading (loading the
    sources' payload types from the registry) makes every payload typed, without bcc or
    Textual."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ebpftop.collectors.registry import load_payload_types\n"
        "from ebpftop.core.replay import read_recording\n"
        "load_payload_types()\n"
        f"rec = read_recording({str(DEMO)!r})\n"
        "types = sorted({(f.source, type(f.data).__name__) for f in rec.frames if f.data is not None})\n"
        "print(types)\n"
        "assert not [m for m in sys.modules if m.startswith(('bcc', 'textual'))]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(
        [
            ("canary", "CanaryData"),
            ("flows", "FlowsData"),
            ("host", "HostData"),
            ("marker", "Marker"),
            ("profiles", "ProfilesData"),
            ("rollout", "RolloutData"),
        ]
    )


def test_replay_loads_every_payload_type_the_collectors_register():
    """load_payload_types finds payloads by convention (<source>/model.py or data.py);
    a payload registered anywhere else would replay as a plain dict."""
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parent.parent
    mods = sorted(
        f"ebpftop.{layer}." + ".".join(p.relative_to(repo / layer).with_suffix("").parts)
        for layer in ("core", "collectors")  # both register payload types
        for p in (repo / layer).rglob("*.py")
        if p.name != "__init__.py"
    )
    every = (
        "import importlib\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "from ebpftop.core.model import _PAYLOADS\n"
        "print(sorted(_PAYLOADS))\n"
    )
    loaded = (  # as the replay verb does: core's reader registers its own (the recorder)
        "import ebpftop.core.replay\n"
        "from ebpftop.collectors.registry import load_payload_types\n"
        "load_payload_types()\n"
        "from ebpftop.core.model import _PAYLOADS\n"
        "print(sorted(_PAYLOADS))\n"
    )
    out = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        for code in (every, loaded)
    ]
    assert out[0] == out[1]
    assert "host" in out[1] and "flows" in out[1]


def test_corrupt_line_names_the_field(tmp_path):
    frames = session()
    path = tmp_path / "a.rec"
    record(path, frames)
    body = lines(path)
    bad = next(n for n in range(8, len(body)) if json.loads(body[n - 1])["source"] == "host")
    obj = json.loads(body[bad - 1])
    obj["data"]["cpu_percent"] = "lots"
    body[bad - 1] = json.dumps(obj).encode()
    path.write_bytes(b"\n".join(body))
    got = read_recording(str(path))
    assert got.frames == frames[: bad - 2]
    assert str(got.stopped_at) == f"line {bad}: not a snapshot: .data.cpu_percent: expected a number, got str"


@pytest.mark.parametrize(
    "garbage, why",
    [
        (b"garbage{", "not JSON: "),
        (b'{"a":"\xff"}', "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "not a snapshot: nested too deeply"),
        (b'{"source":"host","seq":1}', "not a snapshot: .time: missing"),
        (b"[1, 2]", "not a snapshot: <root>: a snapshot must be an object"),
    ],
)
def test_garbage_line_says_what_is_wrong(tmp_path, garbage, why):
    path = tmp_path / "a.rec"
    record(path, session(3))
    body = lines(path)
    body.insert(3, garbage)
    path.write_bytes(b"\n".join(body))
    got = read_recording(str(path))
    assert len(got.frames) == 2
    assert got.stopped_at.line == 4
    assert got.stopped_at.offset == sum(len(b) + 1 for b in body[:3])
    assert got.stopped_at.reason.startswith(why)


def test_frame_limit_stops_like_damage(tmp_path):
    path = tmp_path / "a.rec"
    frames = session()
    record(path, frames)
    got = read_recording(str(path), max_frames=3)
    assert got.frames == frames[:3]
    assert got.stopped_at.line == 5 and "frame limit" in got.stopped_at.reason


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "empty file"),
        (b"hello world\n", "not an ebpftop recording"),
        (b'{"source":"host"}\n', "not an ebpftop recording"),
        (b'{"format":"ebpftop-record","version":99}\n', "version 99 is newer"),
        (b'{"format":"other","version":1}\n', "unknown format"),
    ],
)
def test_unreplayable_files_are_refused_with_the_reason(tmp_path, content, why):
    path = tmp_path / "x.rec"
    path.write_bytes(content)
    with pytest.raises(ReplayError, match=why):
        read_recording(str(path))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ReplayError, match="No such file"):
        read_recording(str(tmp_path / "nope.rec"))


# --- replayer ---------------------------------------------------------------------------


def reference_store(frames: list[Snapshot], history: int) -> Store:
    store = Store(history)
    for snap in frames:
        store.put(snap)
    return store


def make_replayer(frames, history=300):
    bus, store = Bus(), Store(history)
    bus.subscribe(store)
    published: list[Snapshot] = []
    bus.subscribe(published.append)
    return Replayer(frames, bus=bus, store=store, history=history), store, published


def test_ticks_group_one_round_of_sources():
    rep, _, _ = make_replayer(session(6))
    # host every second; the extra sources ride along with the host sample before them
    assert len(rep) == 6
    assert [s.source for s in rep.tick_frames(0)] == ["host", "future", "flows"]
    assert [s.source for s in rep.tick_frames(4)] == ["host", "marker"]


def test_stepping_forward_and_back_shows_exactly_the_recorded_state():
    frames = session(12)
    history = 4
    rep, store, _ = make_replayer(frames, history)
    for _ in range(9):
        assert rep.step(+1)
    for target in (8, 5, 2, 0, 1, 7, 11):
        rep.step(target - rep.position)
        assert rep.position == target
        end = sum(len(rep.tick_frames(i)) for i in range(target + 1))
        want = reference_store(frames[:end], history)
        for source in want.sources():
            assert store.latest(source) == want.latest(source), (target, source)
            assert store.history(source) == want.history(source), (target, source)


def test_stepping_back_before_a_source_existed_says_no_data_yet():
    rep, store, _ = make_replayer(session(8))
    rep.seek(5)
    assert store.latest("marker").data.text == "spike"
    rep.step(-4)
    snap = store.latest("marker")
    assert snap.data is None
    assert snap.health.state == HealthState.DOWN and "no data yet" in snap.health.message


def test_step_is_clamped_and_pauses():
    rep, _, _ = make_replayer(session(3))
    assert not rep.paused
    assert rep.step(-1)  # from "nothing shown" to the first tick
    assert rep.paused and rep.position == 0
    assert not rep.step(-1)
    rep.step(+10)
    assert rep.position == len(rep) - 1 and rep.at_end
    assert not rep.step(+1)


def test_speed_doubles_and_halves_within_bounds():
    rep, _, _ = make_replayer(session(3))
    assert rep.faster() == 2.0
    for _ in range(10):
        rep.faster()
    assert rep.speed == MAX_SPEED == 16.0
    for _ in range(20):
        rep.slower()
    assert rep.speed == MIN_SPEED == 0.25


def test_status_text():
    rep, _, _ = make_replayer(session(20))
    rep.seek(12)
    rep.faster()
    rep.toggle_pause()
    assert rep.status_text() == "REPLAY 00:12/00:19 ×2 paused"
    rep.toggle_pause()
    assert rep.status_text() == "REPLAY 00:12/00:19 ×2"
    rep.slower(), rep.slower(), rep.slower()
    rep.seek(19)
    assert rep.status_text() == "REPLAY 00:19/00:19 ×0.25 end"


def fast_frames(n: int) -> list[Snapshot]:
    return [host(i + 1, T0 + i * 0.01) for i in range(n)]


async def test_play_publishes_every_frame_in_order():
    frames = fast_frames(30)
    rep, store, published = make_replayer(frames)
    rep.faster(), rep.faster()
    task = asyncio.create_task(rep.play())
    try:
        async with asyncio.timeout(20):
            await rep.finished.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert published == frames
    assert store.latest("host") == frames[-1]


async def test_play_started_paused_shows_the_first_sample_only():
    frames = fast_frames(10)
    rep, _, published = make_replayer(frames)
    rep.paused = True
    rep.speed = MAX_SPEED
    task = asyncio.create_task(rep.play())
    try:
        await asyncio.sleep(0.2)  # ten times the whole recording at this speed
        assert published == frames[:1]
        rep.toggle_pause()
        async with asyncio.timeout(20):
            await rep.finished.wait()
        assert published == frames
        # resuming at the end starts over
        rep.toggle_pause()
        assert rep.position == 0 and not rep.paused and not rep.finished.is_set()
        async with asyncio.timeout(20):
            await rep.finished.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert published[len(frames)] == frames[0]
    assert published[-1] == frames[-1]


async def test_replay_runtime_plays_the_demo_read_only():
    from ebpftop.collectors.registry import load_payload_types

    settings = Settings(record="/nonexistent/should-not-be-created.rec", history=50)
    load_payload_types()  # as the replay verb does before reading
    rt = ReplayRuntime.from_file(settings, str(DEMO))
    assert rt.read_only and rt.collectors == [] and rt.settings.record is None
    assert rt.gate.read_only
    rt.replay.speed = MAX_SPEED
    await rt.start()
    try:
        async with asyncio.timeout(30):
            await rt.replay.finished.wait()
    finally:
        await rt.stop()
    assert rt.recorder is None
    latest = rt.store.latest("host")
    assert latest.data.hostname == "demo-node-1" and latest.seq == 20
    assert len(rt.store.history("host")) == 20
    assert rt.store.latest("rules").health.state == HealthState.DOWN
    assert rt.store.latest("canary").data.services[0].name == "checkout"
    assert rt.store.latest("marker").data.author == "oncall"
    assert rt.replay.damage is None


def test_replay_runtime_reports_damage():
    rt = ReplayRuntime.from_file(Settings(), str(DATA / "damaged.rec"))
    assert rt.replay.damage == f"line {DAMAGED_AT}: truncated JSON (the line is cut off)"


def test_demo_recording_is_what_the_script_writes(tmp_path):
    """The committed fixture is regenerable: the script reproduces it byte for byte.

    When a payload dataclass changes, this fails: rerun scripts/make_demo_recording.py.
    """
    import subprocess
    import sys

    script = pathlib.Path(__file__).parent.parent / "scripts" / "make_demo_recording.py"
    subprocess.run([sys.executable, str(script), "--out-dir", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "demo.rec").read_bytes() == DEMO.read_bytes(), (
        "stale: run scripts/make_demo_recording.py"
    )
    assert (tmp_path / "damaged.rec").read_bytes() == (DATA / "damaged.rec").read_bytes()
