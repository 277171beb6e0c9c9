#!/usr/bin/env python3
"""Record the fleet view of the real lab while one node loses packets -> screenshots/fleet.rec.gz
(the source of the README's fleet picture, screenshots/fleet-160x48.svg).

Needs root (the lab). Step by step, each with the real CLI:
1. `ebpftop lab up --nodes 3` of an instance of its own (default "fpic", 198.18.243.0/24,
   Prometheus on 19243: an instance's subnet and port are what `lab up` is given, and
   these are no other instance's: the tests' lab, fl, fb, nd, sc, fr and the main
   pictures' pic use others), three nodes each with a real agent;
2. it waits until the lab's Prometheus scrapes the three agents;
3. `ebpftop --fleet http://127.0.0.1:19243 --record RAW.gz` in a 160x48 pseudo-terminal
   (bench/pty_app.py) with a private HOME and config, until the three nodes are listed
   up, then a short healthy BASELINE;
4. `ebpftop lab inject node2 retransmits=on` (node2's pod drops 8% of its TCP packets);
5. it runs until node2 is ranked first naming retransmits, and TAIL seconds more (past
   the moment the picture shows, scripts/screenshots.py `fleet_anchor`); SIGTERM ends
   the view as `q` would;
6. `lab down`, also after a failure.

The fleet view reads only this instance's Prometheus, so other labs up on the host do
not show in it. The raw recording is then trimmed (`trim`) to PRE seconds before the
injection's effect up to AFTER seconds after the picture's moment, and written as gzip
without a name or time in its header (a few KB).

Usage: sudo .venv/bin/python scripts/make_fleet_recording.py [--out FILE] [--keep-raw FILE]
       .venv/bin/python scripts/make_fleet_recording.py --trim RAW.gz [--out FILE]   (no root: trim again)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from recording_steps import CLI, Steps, read_lines, write_gz  # noqa: E402

OUT = ROOT / "screenshots" / "fleet.rec.gz"
PY = sys.executable
EBPFTOP = str(pathlib.Path(PY).parent / "ebpftop")
COLS, ROWS = 160, 48
STEPS = Steps("make_fleet_recording")
say, run, wait = STEPS.say, STEPS.run, STEPS.wait
NODES = 3
BAD, FAULT = "node2", "retransmits=on"

SCRAPE_TIMEOUT = 180.0
STARTUP_TIMEOUT = 120.0
RANK_TIMEOUT = 180.0
BASELINE = 10.0  # seconds of a healthy fleet on screen before the injection
TAIL = 12.0  # after node2 is ranked first: past the picture's moment (screenshots.FLEET_SETTLE + AFTER)
PRE = 20.0  # kept before node2 is first ranked
AFTER = 3.0  # kept after the moment the picture shows
ROW = re.compile(r"^\W*(node\d)\s+(up|DOWN|part|\?)\s", re.M)


# --- trimming (no root) ----------------------------------------------------------------


def trim(raw: pathlib.Path, out: pathlib.Path) -> str:
    """Keep PRE s before node2 is first ranked first to AFTER s after the moment the
    picture shows (screenshots.fleet_anchor); gzip with no name and no time in its header.
    Raises SystemExit saying what is missing."""
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import read_recording
    from screenshots import fleet_anchor, ranks_first

    load_payload_types()
    recording = read_recording(str(raw))
    if recording.stopped_at is not None or len(recording.headers) != 1:
        raise SystemExit(f"{raw}: {len(recording.headers)} sessions, damage {recording.stopped_at}")
    frames = sorted(recording.frames, key=lambda s: s.time)
    shown = fleet_anchor(frames)
    first = next((s.time for s in frames if ranks_first(s)), None)
    if shown is None or first is None:
        raise SystemExit(f"{raw}: no fleet snapshot ranking {BAD} first for retransmits, settled")
    start, end = first - PRE, shown.time + AFTER
    objs = read_lines(raw)
    kept = [o for o in objs[1:] if start <= o["time"] <= end]
    header = dict(objs[0], started=round(kept[0]["time"], 3))
    size = write_gz([header, *kept], out)
    t0 = kept[0]["time"]
    return (
        f"{len(kept)} of {len(objs) - 1} snapshots, {kept[-1]['time'] - t0:.0f} s "
        f"({BAD} first at +{first - t0:.0f} s, picture at +{shown.time - t0:.0f} s), "
        f"{size / 1e3:.0f} KB -> {out.stat().st_size / 1e3:.1f} KB gz"
    )


# --- the lab and the fleet view (root) ----------------------------------------------------


def rows(text: str) -> list[tuple[str, str]]:
    """(node, agent) of the fleet table's rows, top first."""
    return [(m.group(1), m.group(2)) for m in ROW.finditer(text)]


def row_line(text: str, node: str) -> str:
    return next((line for line in text.splitlines() if re.search(rf"\b{node}\s+(up|DOWN|part)", line)), "")


def scraped(url: str) -> int:
    """How many of the lab's agents Prometheus scrapes now."""
    from ebpftop.lab import prometheus

    try:
        return len(prometheus.PrometheusAPI(url, timeout=5.0).query('up{job="ebpftop"} == 1'))
    except Exception:
        return 0


def record(config: Any, raw: pathlib.Path) -> None:
    from pty_app import PtyApp

    from ebpftop.lab.layout import Layout

    url = Layout(config).prometheus_url
    home = pathlib.Path(tempfile.mkdtemp(prefix="ebpftop-fleetrec-"))
    conf = home / "config.toml"
    conf.write_text(f'[audit]\nlog = "{home}/audit.jsonl"\nkey = "{home}/audit.key"\n')
    conf.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SSH_")) and k != "SUDO_USER"}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    instance = ["--instance", config.name]
    app = None
    try:
        run(
            [
                *CLI,
                "lab",
                "up",
                *instance,
                "--subnet",
                config.subnet,
                "--prometheus-port",
                str(config.prometheus_port),
                "--rate",
                str(config.rate),
                "--nodes",
                str(NODES),
            ],
            env=env,
        )
        end = time.monotonic() + SCRAPE_TIMEOUT
        while scraped(url) < NODES:
            if time.monotonic() > end:
                raise SystemExit(f"the lab's {NODES} agents are not all scraped by {url}")
            time.sleep(1)
        argv = [EBPFTOP, "--config", str(conf), "--fleet", url, "--record", str(raw)]
        say(f"$ ebpftop --fleet {url} --record {raw}  (in a {COLS}x{ROWS} pty)")
        app = PtyApp(argv, COLS, ROWS, env=env)
        wait(
            app,
            f"{NODES} nodes up",
            lambda t: len(rows(t)) == NODES and all(a == "up" for _, a in rows(t)),
            STARTUP_TIMEOUT,
        )
        say(f"baseline: {BASELINE:.0f} s")
        app.wait_for(lambda t: False, BASELINE)
        run([*CLI, "lab", "inject", *instance, BAD, FAULT], env=env)
        wait(
            app,
            f"{BAD} ranked first for retransmits",
            lambda t: rows(t)[:1] == [(BAD, "up")] and "retransmits" in row_line(t, BAD),
            RANK_TIMEOUT,
        )
        say(f"{BAD}: {' '.join(row_line(app.text(), BAD).split())}; {TAIL:.0f} s more")
        app.wait_for(lambda t: False, TAIL)
    finally:
        if app is not None:
            app.close()
        run([*CLI, "lab", "down", *instance], check=False, env=env)
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.add_argument("--keep-raw", type=pathlib.Path, help="also keep the untrimmed recording here")
    parser.add_argument("--trim", type=pathlib.Path, metavar="RAW", help="only trim this raw recording")
    parser.add_argument("--instance", default="fpic")
    parser.add_argument("--subnet", default="198.18.243.0/24")
    parser.add_argument("--prometheus-port", type=int, default=19243)
    args = parser.parse_args(argv)
    if args.trim:
        say(trim(args.trim, args.out))
        return 0
    if os.geteuid() != 0:
        say("needs root (the lab): sudo .venv/bin/python scripts/make_fleet_recording.py")
        return 2
    from ebpftop.lab.layout import LabConfig

    config = LabConfig(
        name=args.instance, subnet=args.subnet, prometheus_port=args.prometheus_port, rate=10, nodes=NODES
    )
    with tempfile.TemporaryDirectory(prefix="ebpftop-fleetrec-raw-") as tmp:
        raw = args.keep_raw or pathlib.Path(tmp) / "raw.rec.gz"
        if raw.exists():
            raw.unlink()
        record(config, raw)
        say(trim(raw, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
