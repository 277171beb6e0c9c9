"""Damaged recordings: whatever a file holds, replay loads and steps through it, and the
only error is ReplayError naming file and line (damage later in a file is a Damage that
names its line, and everything before it plays)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpftop.cli.commands.replay import summary
from ebpftop.core.bus import Bus
from ebpftop.core.replay import Replayer, ReplayError, ReplayRuntime, read_recording
from ebpftop.core.settings import Settings
from ebpftop.core.store import Store

DEMO = pathlib.Path(__file__).parent / "data" / "demo.rec"
_ALL = DEMO.read_bytes().splitlines()
# The header, one round of every source (profiles and rollout come every other second)
# and the marker: every payload type, small enough that 200 examples stay quick.
BASE = [*_ALL[:19], next(line for line in _ALL if b'"source":"marker"' in line)]

SENTINEL = "\x00HOSTILE\x00"
HOSTILE_NUMBERS = [
    "Infinity",
    "-Infinity",
    "NaN",
    "-1",
    "1e308",
    "-1e308",
    "1e400",
    "0",
    "4" * 40,
    "9" * 5000,
    "18446744073709551616",
    "-0.0",
    "1.5",
]
HOSTILE_VALUES = [
    '"x"',
    '""',
    "null",
    "true",
    "[]",
    "{}",
    '{"a":1}',
    "[[[[[]]]]]",
    '"\\u0000\\u001b[2J"',
    '"' + "y" * 10_000 + '"',
    *HOSTILE_NUMBERS,
]


def leaves(obj, path=()):
    """Every (path, value) in a decoded line, containers included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))


def replaced(line: bytes, rnd: random.Random, numbers_only: bool) -> bytes:
    """The line with one value (a number, or anything) swapped for hostile JSON text."""
    obj = json.loads(line)
    spots = [(p, v) for p, v in leaves(obj) if p and (not numbers_only or isinstance(v, (int, float)))]
    if not spots:
        return line
    path, _ = rnd.choice(spots)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = SENTINEL
    text = json.dumps(obj, separators=(",", ":"))
    new = rnd.choice(HOSTILE_NUMBERS if numbers_only else HOSTILE_VALUES)
    return text.replace(json.dumps(SENTINEL), new, 1).encode()


def mutate(lines: list[bytes], op: str, rnd: random.Random) -> list[bytes]:
    lines = list(lines)
    n = rnd.randrange(len(lines)) if lines else 0
    if not lines and op not in ("garbage", "long", "deep"):
        return lines
    if op == "truncate":
        blob = b"\n".join(lines)
        return blob[: rnd.randrange(len(blob) + 1)].split(b"\n")
    if op == "flip":
        line = bytearray(lines[n] or b" ")
        for _ in range(rnd.randint(1, 4)):
            line[rnd.randrange(len(line))] ^= rnd.randrange(1, 256)
        lines[n] = bytes(line)
    elif op == "number":
        with contextlib.suppress(ValueError, RecursionError):
            lines[n] = replaced(lines[n], rnd, numbers_only=True)
    elif op == "type":
        with contextlib.suppress(ValueError, RecursionError):
            lines[n] = replaced(lines[n], rnd, numbers_only=False)
    elif op == "time":  # the field the player does arithmetic with
        try:
            obj = json.loads(lines[n])
        except (ValueError, RecursionError):
            return lines
        if isinstance(obj, dict):
            obj["time"] = SENTINEL
            lines[n] = json.dumps(obj).replace(json.dumps(SENTINEL), rnd.choice(HOSTILE_VALUES), 1).encode()
    elif op == "reorder":
        rnd.shuffle(lines)
    elif op == "swap":
        m = rnd.randrange(len(lines))
        lines[n], lines[m] = lines[m], lines[n]
    elif op == "duplicate":
        lines.insert(n, lines[n])
    elif op == "drop":
        del lines[n]
    elif op == "drop_header":
        del lines[0]
    elif op == "garbage":
        lines.insert(n, bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300))))
    elif op == "long":
        lines.insert(n, b'{"source":"host","seq":1,"time":1700000000,"data":"' + b"z" * 300_000 + b'"}')
    elif op == "deep":
        lines.insert(n, b'{"source":"host","data":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    elif op == "header":
        lines.insert(
            n,
            rnd.choice(
                [
                    b'{"format":"ebpftop-record","version":1e400}',
                    b'{"format":"other"}',
                    b'{"format":"ebpftop-record","version":' + b"9" * 50 + b"}",
                    b'{"format":"ebpftop-record","version":1,"host":[1]}',
                ]
            ),
        )
    return lines


OPS = [
    "truncate",
    "flip",
    "number",
    "type",
    "time",
    "reorder",
    "swap",
    "duplicate",
    "drop",
    "drop_header",
    "garbage",
    "long",
    "deep",
    "header",
]


def load_and_step(path: str) -> None:
    """What `ebpftop replay` does with a file, minus the screen: load, summary, play it
    all forward, step back, seek, every status text on the way."""
    try:
        runtime = ReplayRuntime.from_file(Settings(history=20), path)
    except ReplayError as exc:
        assert str(exc).startswith(f"{path}:"), exc
        if exc.line is None:  # only when no line exists to name
            assert not any(line.strip() for line in read_plain(path).split(b"\n")), exc
        return
    rec = runtime.recording
    if rec.stopped_at is not None:
        assert rec.stopped_at.line >= 2 and str(rec.stopped_at).startswith(f"line {rec.stopped_at.line}: ")
    summary(runtime)
    bus, store = Bus(), Store(20)
    bus.subscribe(store)
    rep = Replayer(rec.frames, bus=bus, store=store, damage=rec.stopped_at, history=20)
    rep.status_text()
    while rep.step(+1):
        rep.status_text()
        if not rep.at_end:
            rep._wait_for_next()
    rep.seek(len(rep) // 2)
    rep.step(-len(rep) - 1)
    rep.toggle_pause()
    rep.faster()
    assert rep.status_text().startswith("REPLAY ")
    assert rep.duration >= 0 and rep.elapsed >= 0


def read_plain(path: str) -> bytes:
    data = pathlib.Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return b"x"  # unreadable compressed data: there was a first line to blame
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    compress=st.sampled_from(["plain", "plain", "gzip", "gzip-flipped"]),
)
def test_a_damaged_recording_replays_or_is_refused_naming_the_line(ops, seed, compress):
    rnd = random.Random(seed)
    lines = BASE
    for op in ops:
        lines = mutate(lines, op, rnd)
    blob = b"\n".join(lines) + (b"\n" if rnd.random() < 0.8 else b"")
    if compress != "plain":
        blob = bytearray(gzip.compress(blob))
        if compress == "gzip-flipped":
            blob[rnd.randrange(len(blob))] ^= rnd.randrange(1, 256)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "damaged.rec")
        pathlib.Path(path).write_bytes(bytes(blob))
        load_and_step(path)


def test_the_undamaged_base_plays_every_source():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "base.rec")
        pathlib.Path(path).write_bytes(b"\n".join(BASE) + b"\n")
        rec = read_recording(path)
    assert rec.stopped_at is None and len(rec.frames) == len(BASE) - 1
    assert set(rec.sources) == {"host", "rules", "flows", "canary", "rollout", "profiles", "marker"}


def hostile_time(time_text: str, tmp_path) -> pathlib.Path:
    good = json.loads(BASE[1])
    good["time"] = SENTINEL
    bad = json.dumps(good).replace(json.dumps(SENTINEL), time_text).encode()
    path = tmp_path / "bad.rec"
    path.write_bytes(b"\n".join([BASE[0], BASE[1], BASE[2], bad, BASE[3]]) + b"\n")
    return path


def test_time_infinity_stops_the_recording_at_its_line(tmp_path):
    for text, why in [
        ("Infinity", "not JSON: Infinity (a recording holds null for a missing number)"),
        ("1e400", "not JSON: the number 1e400 is out of range"),
        ("1e308", "not a snapshot: .time: 1e+308 is not a Unix time"),
        ("-1", "not a snapshot: .time: -1.0 is not a Unix time"),
        ("9" * 400, "not JSON: an integer of 400 digits is out of range"),
    ]:
        rec = read_recording(str(hostile_time(text, tmp_path)))
        assert len(rec.frames) == 2
        assert str(rec.stopped_at) == f"line 4: {why}"


def test_replay_of_a_file_with_no_playable_snapshot_names_file_and_line(tmp_path):
    """The CLI, as a user meets it: one clear line, exit 2 (bad input, as for a config
    or a file that is not a recording), no traceback."""
    good = json.loads(BASE[1])
    good["time"] = SENTINEL
    path = tmp_path / "bad.rec"
    path.write_bytes(
        BASE[0] + b"\n" + json.dumps(good).replace(json.dumps(SENTINEL), "1" * 400).encode() + b"\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SUDO_", "XDG_"))}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", "replay", str(path)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr == (
        f"ebpftop: cannot replay: {path}:2: not JSON: an integer of 400 digits is out of range "
        "(no snapshot before it)\n"
    )
