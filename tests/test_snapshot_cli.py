"""`ebpftop snapshot --json` and `ebpftop replay` from the command line, in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import psutil
import pytest

from ebpftop.cli import headless
from ebpftop.core.codec import to_jsonable
from ebpftop.core.collector import Collector, SourceUnavailable
from ebpftop.core.replay import read_recording
from ebpftop.core.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
EBPFTOP = str(ROOT / ".venv" / "bin" / "ebpftop")
DATA = pathlib.Path(__file__).parent / "data"


def ebpftop(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_")}
    env["HOME"] = str(cwd or ROOT)  # no user config file changes what is tested
    return subprocess.run([EBPFTOP, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


# --- the real CLI ------------------------------------------------------------------------


def test_snapshot_json_prints_host_data(tmp_path):
    proc = ebpftop("snapshot", "--json", "--duration", "2", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    # exit 0 exactly when every source that is not off delivered; each failure is named
    failed = [
        name
        for name, e in doc["sources"].items()
        if e["health"]["state"] != "off" and not (e["health"]["state"] == "ok" and e["data"] is not None)
    ]
    assert proc.returncode == (1 if failed else 0), proc.stderr
    assert sorted(line.split()[2] for line in proc.stderr.splitlines() if " failed: " in line) == sorted(
        failed
    )
    assert doc["version"] == 1
    assert doc["host"] == socket.gethostname()
    host = doc["sources"]["host"]
    assert host["health"]["state"] == "ok"
    data = host["data"]
    assert data["hostname"] == socket.gethostname()
    assert data["cpu_count"] == os.cpu_count()
    assert data["mem_total"] == psutil.virtual_memory().total
    assert 0 < data["mem_used"] <= data["mem_total"]
    assert 0.0 <= data["cpu_percent"] <= 100.0
    assert len(data["load"]) == 3
    # two samples in two seconds: the rates exist (not null) and lo is among the NICs
    assert data["net_rx_bps"] is not None and data["net_rx_bps"] >= 0
    assert "lo" in {n["name"] for n in data["nics"]}
    assert host["seq"] >= 2
    assert host["age_s"] is not None and host["age_s"] >= 0


def test_unknown_source_exits_2_listing_valid_names(tmp_path):
    proc = ebpftop("snapshot", "--json", "--source", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "unknown source nope" in proc.stderr
    assert "valid sources: " in proc.stderr and "host" in proc.stderr.split("valid sources: ")[1]


def test_bad_duration_and_bad_config_exit_2(tmp_path):
    proc = ebpftop("snapshot", "--json", "--duration", "soon", cwd=tmp_path)
    assert proc.returncode == 2 and "--duration" in proc.stderr
    proc = ebpftop("--refresh", "-1", "snapshot", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and "refresh" in proc.stderr
    assert proc.stdout == ""


def test_snapshot_does_not_import_textual(tmp_path):
    code = (
        "import sys\n"
        "from ebpftop.cli.main import main\n"
        "rc = main(['snapshot', '--json', '--duration', '0', '--source', 'host'])\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "sys.stderr.write('TEXTUAL:%r\\n' % bad)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "TEXTUAL:[]" in proc.stderr
    assert json.loads(proc.stdout)["sources"]["host"]["data"]["cpu_count"] == os.cpu_count()


@pytest.mark.parametrize("before_verb", [False, True])
def test_record_then_replay_shows_the_printed_data(tmp_path, before_verb):
    rec = tmp_path / "snap.rec"
    args = ["snapshot", "--json", "--duration", "3", "--record", str(rec)]
    if before_verb:  # the global flag before the verb, every source
        args = ["--record", str(rec), *args[:-2]]
    else:  # after the verb, host only
        args += ["--source", "host"]
    proc = ebpftop(*args, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    recording = read_recording(str(rec))
    assert recording.stopped_at is None
    hosts = [f for f in recording.frames if f.source == "host"]
    assert len(hosts) == doc["sources"]["host"]["seq"] >= 3
    # every source the document shows is the last thing recorded for it
    for name, entry in doc["sources"].items():
        last = [f for f in recording.frames if f.source == name][-1]
        assert to_jsonable(last.data) == entry["data"], name
        assert to_jsonable(last.health) == entry["health"], name
        assert (last.seq, last.time) == (entry["seq"], entry["time"]), name
    status = doc["recorder"]["data"]
    assert status["state"] == "stopped" and status["reason"] == "closed"
    assert status["frames"] == len(recording.frames)
    assert status["bytes"] == rec.stat().st_size

    summary = ebpftop("replay", str(rec), "--summary", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert f"host ({len(hosts)})" in summary.stdout.split("sources: ")[1]
    assert "stopped at" not in summary.stdout


def test_record_bound_is_reported_but_not_a_failure(tmp_path):
    rec = tmp_path / "tiny.rec"
    proc = ebpftop(
        "--record",
        str(rec),
        "--record-max-mb",
        "0.001",
        "snapshot",
        "--json",
        "--duration",
        "2",
        "--source",
        "host",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["recorder"]["health"]["message"] == "recording stopped: file reached 0.001 MB"
    assert "recording stopped: file reached 0.001 MB" in proc.stderr
    assert rec.stat().st_size <= 1048
    assert read_recording(str(rec)).stopped_at is None


def test_record_that_cannot_start_fails_the_snapshot(tmp_path):
    proc = ebpftop(
        "--record",
        str(tmp_path / "no" / "dir.rec"),
        "snapshot",
        "--json",
        "--duration",
        "0",
        "--source",
        "host",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "recording failed: cannot open: No such file or directory" in proc.stderr
    assert json.loads(proc.stdout)["sources"]["host"]["health"]["state"] == "ok"


def test_replay_refuses_bad_files_with_exit_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    proc = ebpftop("replay", str(notes), cwd=tmp_path)
    assert proc.returncode == 2
    assert "cannot replay" in proc.stderr and "not an ebpftop recording" in proc.stderr
    proc = ebpftop("replay", str(tmp_path / "missing.rec"), cwd=tmp_path)
    assert proc.returncode == 2 and "No such file or directory" in proc.stderr


def test_replay_summary_says_where_a_damaged_file_stops(tmp_path):
    proc = ebpftop("replay", str(DATA / "damaged.rec"), "--summary", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stopped at line 30: truncated JSON" in proc.stdout
    assert "hosts: demo-node-1" in proc.stdout


# --- the headless runner with fake sources ------------------------------------------------


class Fake(Collector):
    def __init__(self, name: str, *, fail: Exception | None = None) -> None:
        self.name = name
        self.interval = 0.05
        self.fail = fail

    async def collect(self):
        if self.fail is not None:
            raise self.fail
        return {"value": 1}


def fakes() -> list[Collector]:
    return [
        Fake("good"),
        Fake("broken", fail=RuntimeError("map lookup failed")),
        Fake("unconfigured", fail=SourceUnavailable("no URL configured", "set --prometheus-url", off=True)),
    ]


def snapshot(sources=None):
    return asyncio.run(headless.run_snapshot(Settings(), sources, duration=0.2, collectors=fakes()))


def test_failed_source_is_named_and_off_only_counts_when_asked_for():
    result = snapshot()
    assert [(f.source, f.message) for f in result.failures] == [("broken", "RuntimeError: map lookup failed")]
    assert result.doc["sources"]["good"]["data"] == {"value": 1}
    assert result.doc["sources"]["unconfigured"]["health"]["state"] == "off"
    assert result.doc["sources"]["broken"]["data"] is None

    asked = snapshot(["good", "unconfigured"])
    assert set(asked.doc["sources"]) == {"good", "unconfigured"}
    assert [(f.source, f.message) for f in asked.failures] == [
        ("unconfigured", "off: no URL configured (set --prometheus-url)")
    ]
    assert snapshot(["good"]).ok


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(headless.UnknownSource) as err:
        snapshot(["good", "nope"])
    assert err.value.unknown == ["nope"]
    assert err.value.valid == ["good", "broken", "unconfigured"]


def test_cli_exit_1_names_the_failed_source(monkeypatch, capsys):
    from ebpftop.cli import main as cli

    monkeypatch.setattr(headless, "default_collectors", lambda settings: fakes())
    monkeypatch.setattr(headless, "DEFAULT_DURATION", 0.2)
    monkeypatch.setenv("HOME", "/nonexistent")
    rc = cli.main(["snapshot", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert json.loads(out)["sources"]["good"]["health"]["state"] == "ok"
    assert err.strip().splitlines() == ["ebpftop: source broken failed: RuntimeError: map lookup failed"]


# --- alarms: what the dashboard's header says, in the document -----------------------------


def test_snapshot_json_carries_a_source_down_as_an_alarm(tmp_path):
    """The real CLI, its canary pointed at a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_")}
    env.update(HOME=str(tmp_path), EBPFTOP_PROMETHEUS_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.run(
        [EBPFTOP, "snapshot", "--json", "--duration", "1", "--source", "canary", "--source", "host"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    health = doc["sources"]["canary"]["health"]
    assert health["state"] == "down" and "Connection refused" in health["message"]
    assert doc["alarms"] == [
        {
            "source": "canary",
            "severity": "error",
            "text": f"canary down: {health['message']}",
            "kind": "down",
            "detail": {
                "state": "down",
                "message": health["message"],
                "hint": health["hint"],
                "errors": health["errors"],
                "last_good_age_s": None,
                "stale": False,
            },
        }
    ]


def test_alarms_name_sources_down_or_silent_but_not_off():
    result = snapshot()
    assert [(a["source"], a["kind"], a["text"]) for a in result.doc["alarms"]] == [
        ("broken", "down", "broken down: RuntimeError: map lookup failed")
    ]
    assert result.doc["alarms"][0]["detail"]["errors"] >= 1
    # A requested source that never reported is down in the alarms as in its entry.
    silent = Fake("silent")
    silent.interval = 60.0

    async def never():
        await asyncio.sleep(60)

    silent.collect = never
    doc = asyncio.run(
        headless.run_snapshot(Settings(), None, duration=0.1, grace=0.2, collectors=[Fake("good"), silent])
    ).doc
    assert doc["sources"]["silent"]["health"]["message"] == "no report within the time allowed"
    assert [(a["source"], a["text"]) for a in doc["alarms"]] == [
        ("silent", "silent down: no report within the time allowed")
    ]


@pytest.mark.integration
def test_snapshot_json_carries_a_failing_canary_from_a_real_prometheus(tmp_path):
    """Backfilled series where the canary's p99 and 5xx ratio breach their thresholds;
    the real collector (clock at the data's time) judges them in the headless run."""
    from promtools import openmetrics_counter, openmetrics_histogram, prometheus

    from ebpftop.collectors.canary.collector import CanaryCollector
    from ebpftop.collectors.canary.config import ServiceConfig
    from ebpftop.collectors.canary.verdict import Thresholds

    t0 = (int(time.time()) // 7200) * 7200 - 4 * 3600
    at = t0 + 600
    les = ("0.05", "0.5", "2.5", "+Inf")
    fast, slow = dict(zip(les, (90, 10, 0, 0), strict=True)), dict(zip(les, (10, 30, 60, 0), strict=True))
    hist = {(("job", "pay"), ("version", "canary")): slow, (("job", "pay"), ("version", "stable")): fast}
    reqs = {
        (("job", "pay"), ("version", "canary"), ("code", "200")): 95,
        (("job", "pay"), ("version", "canary"), ("code", "500")): 5,
        (("job", "pay"), ("version", "stable"), ("code", "200")): 100,
    }
    om = (
        openmetrics_histogram("http_request_duration_seconds", hist, start=t0, step=15, steps=60)
        + openmetrics_counter("http_requests", reqs, start=t0, step=15, steps=60)
        + "# EOF\n"
    )
    with prometheus(tmp_path, openmetrics=om) as prom:
        settings = Settings(prometheus_url=prom.url, canary_timeout=10.0)
        service = ServiceConfig(name="pay", selector='job="pay"', thresholds=Thresholds(persist=1))
        canary = CanaryCollector(settings, services=(service,), clock=lambda: at)
        result = asyncio.run(headless.run_snapshot(settings, ["canary"], duration=0.5, collectors=[canary]))
    entry = result.doc["sources"]["canary"]
    assert entry["health"]["state"] == "ok", entry["health"]
    (svc,) = entry["data"]["services"]
    assert svc["verdict"] == "fail"
    (alarm,) = result.doc["alarms"]
    assert alarm == {
        "source": "canary",
        "severity": "error",
        # every breach, in a few words: the whole reason is in the detail
        "text": "canary FAIL pay: p99 2.47 s, 5.42x stable, 5xx 5% (1/1)",
        "kind": "canary_verdict",
        "detail": {
            "service": "pay",
            "verdict": "fail",
            "reason": svc["reason"],
            "metrics": [m["name"] for m in svc["metrics"] if m["verdict"] == "fail"],
        },
    }
    assert {"p99", "error_ratio"} <= set(alarm["detail"]["metrics"])
