"""The README's pictures come from screenshots/lab.rec.gz, the real lab recorded during a
scripted incident (scripts/make_lab_recording.py): the file replays whole with every
payload decoded as its source's type, carries the incident marker, and at the moment
scripts/screenshots.py shows, the four panes' sources are healthy with data, the canary
fails, and the shortest profile window is of the incident and holds the canary's
samples. The fleet picture comes from screenshots/fleet.rec.gz, the fleet view of the real
lab while node2 loses packets (scripts/make_fleet_recording.py): small, and at the moment
it shows node2 is ranked first for its retransmits. The screenshots script makes the same
bytes on every run. No root, no network."""

from __future__ import annotations

import asyncio
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from ebpftop.collectors.registry import load_payload_types
from ebpftop.core.bus import Bus
from ebpftop.core.model import HealthState, payload_type
from ebpftop.core.replay import Recording, Replayer, read_recording
from ebpftop.core.store import Store

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshots.py"
PANES = ("flows", "canary", "profiles", "rules")
MAX_BYTES = 1_000_000
FLEET_MAX_BYTES = 200_000


def _script():
    spec = importlib.util.spec_from_file_location("screenshots_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shots = _script()


@pytest.fixture(scope="module")
def recording() -> Recording:
    load_payload_types()
    return read_recording(str(shots.SOURCE))


@pytest.fixture(scope="module")
def shown(recording: Recording) -> Store:
    """The store as the pictures show it."""
    store = Store(history=300)
    replay = Replayer(recording.frames, bus=Bus(), store=store)
    replay.bus.subscribe(store.put)
    replay.seek(shots.moment(replay))
    return store


def test_the_committed_recording_is_small_and_replays_whole_and_typed(recording: Recording) -> None:
    assert shots.SOURCE.stat().st_size < MAX_BYTES
    assert recording.stopped_at is None and len(recording.headers) == 1
    assert {"host", "selfcost", "rollout", "marker", *PANES} <= set(recording.sources)
    for snap in recording.frames:
        cls = payload_type(snap.source)
        assert cls is not None, snap.source
        assert snap.data is None or isinstance(snap.data, cls), (snap.source, snap.seq)


def test_the_pictures_show_the_incident_with_every_pane_healthy(recording: Recording, shown: Store) -> None:
    [marker] = [s for s in recording.frames if s.source == "marker"]
    assert "canary" in marker.data.text
    flows = shown.latest("flows")
    assert flows is shots.anchor(sorted(recording.frames, key=lambda s: s.time))
    for source in PANES:
        latest = shown.latest(source)
        assert latest is not None and latest.data is not None, source
        assert latest.health.state is HealthState.OK, (source, latest.health)
        assert flows.time - latest.time < 10, source  # fresh: the canary evaluates every 5 s
    assert marker.time < flows.time
    assert shots.failing(shown.latest("canary"))
    rules = shown.latest("rules").data
    assert rules.rules and all(r.packets > 0 for r in rules.rules), "every rule has hits"
    window = shown.latest("profiles").data.windows[0]
    assert window.start >= marker.time  # a window of the incident alone
    canary = [g for g in window.groups if ("version", "v1.1.0") in g.tags]
    assert canary and sum(g.samples for g in canary) > 0


def test_the_screenshots_script_writes_the_same_bytes_every_time(tmp_path: pathlib.Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(out)], check=True, capture_output=True)
        runs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.svg"))})
    assert list(runs[0]) == ["fleet-160x48.svg", "main-160x48.svg", "main-80x24.svg"]
    assert runs[0] == runs[1]


def test_the_fleet_recording_is_small_and_shows_node2_ranked_first_for_retransmits() -> None:
    assert shots.FLEET_SOURCE.stat().st_size < FLEET_MAX_BYTES
    recording = read_recording(str(shots.FLEET_SOURCE))
    assert recording.stopped_at is None and len(recording.headers) == 1
    assert "fleet" in recording.sources
    store = Store(history=300)
    replay = Replayer(recording.frames, bus=Bus(), store=store)
    replay.bus.subscribe(store.put)
    replay.seek(shots.fleet_moment(replay))
    fleet = store.latest("fleet")
    assert fleet is shots.fleet_anchor(sorted(recording.frames, key=lambda s: s.time))
    assert fleet.health.state is HealthState.OK, fleet.health
    nodes = fleet.data.nodes
    assert sorted(n.name for n in nodes) == ["node1", "node2", "node3"]
    assert all(n.up for n in nodes)
    assert nodes[0].name == "node2" and "retransmits" in nodes[0].reasons[0], nodes[0]
    assert not any(n.reasons for n in nodes[1:]), nodes


def test_the_fleet_picture_is_the_same_bytes_every_time(tmp_path: pathlib.Path) -> None:
    pictures = []
    for name in ("a", "b"):
        out = tmp_path / f"fleet-{name}.svg"
        asyncio.run(shots.shoot(shots.FLEET_SOURCE, shots.FLEET_SIZE, out, tmp_path, fleet=True))
        pictures.append(out.read_bytes())
    assert b"node2" in pictures[0] and b"retransmits" in pictures[0]
    assert pictures[0] == pictures[1]
