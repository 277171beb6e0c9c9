#!/usr/bin/env python3
"""Record the real lab during a scripted incident -> screenshots/lab.rec.gz (the README pictures' source).

Needs root. Step by step, each with the real CLI:
1. `ebpftop lab up` of an instance of its own (default "pic", 198.18.233.0/24, Prometheus
   on 19233), so it runs beside anyone's default lab;
2. `ebpftop rules load`: count rules on the service's hops and a deny for a client that
   goes around HAProxy, on the lab's interfaces only; a stray client in the client
   namespace knocks on the canary directly a few times a second, so the deny has real hits;
3. `ebpftop --lab --record RAW.gz` in a 160x48 pseudo-terminal (bench/pty_app.py),
   pointed at that instance (`ebpftop.cli.options.LAB_CONFIG`, as the tests do: `--lab`
   itself only knows the default instance), with a private HOME, config, audit log and
   rules pins;
4. a quiet baseline, then an incident marker (the `m` key, confirmed) and
   `ebpftop lab inject canary latency=300ms errors=5% cpu=on`;
5. it runs until the header names the failing canary, and TAIL seconds more (so the
   profiles cover the incident); SIGTERM ends the dashboard as `q` would;
6. teardown, also after a failure: the stray client, `rules flush`, `lab down`.

Other labs up on the host would be recorded too (the BPF sources see the whole host:
their services in Profiles, their connections in the TCP events), so it refuses to
start while one is, unless --busy-ok.

The raw recording is then trimmed (`trim`) to PRE seconds before the marker up to AFTER
seconds after the moment the pictures show (scripts/screenshots.py `anchor`: SETTLE s
after the canary's first FAIL); of the large payloads (Flows ~40 KB gzipped a sample,
Profiles ~17 KB) one every STRIDE seconds is kept, aligned on that moment. It is written
as gzip without a name or time in its header: ~0.6 MB for ~50 s.

Usage: sudo .venv/bin/python scripts/make_lab_recording.py [--out FILE] [--keep-raw FILE]
       .venv/bin/python scripts/make_lab_recording.py --trim RAW.gz [--out FILE]   (no root: trim again)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from recording_steps import CLI, Steps, read_lines, write_gz  # noqa: E402

OUT = ROOT / "screenshots" / "lab.rec.gz"
PY = sys.executable
COLS, ROWS = 160, 48
STEPS = Steps("make_lab_recording")
say, run, wait = STEPS.say, STEPS.run, STEPS.wait

INCIDENT = ("latency=300ms", "errors=5%", "cpu=on")
MARKER = "canary v1.1.0: latency=300ms errors=5% cpu=on injected"
BASELINE = 30.0  # seconds of a healthy lab on screen before the incident
TAIL = 25.0  # after the header names the failure: past the pictures' moment (screenshots.SETTLE + AFTER)
PRE = 20.0  # kept before the marker
AFTER = 5.0  # kept after the moment the pictures show
# The large payloads, kept one every so many seconds: a Flows sample is ~40 KB gzipped
# (its 500 connections), a Profiles one ~17 KB and shows a 10-s window anyway.
STRIDE = {"flows": 5.0, "profiles": 10.0}
STARTUP_TIMEOUT = 120.0
FAIL_TIMEOUT = 180.0

# `--lab` uses cli.options.LAB_CONFIG (or the default lab); this runs the real CLI with it
# pointed at our instance. Written as a script named ebpftop, so the process is called
# `ebpftop` (the kernel names it after the script) in the recording as when run as usual.
LAUNCHER = (
    "#!{python}\n"
    "import json, sys\n"
    "from ebpftop.cli import options\n"
    "from ebpftop.lab.layout import LabConfig\n"
    "options.LAB_CONFIG = LabConfig(**json.loads(sys.argv[1]))\n"
    "from ebpftop.cli.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


# --- trimming (no root) ----------------------------------------------------------------


def latest_before(frames: list[dict[str, Any]], times: list[float]) -> list[dict[str, Any]]:
    """For each time, the last frame at or before it, once: the one a replay shows then."""
    kept: dict[int, dict[str, Any]] = {}
    for t in times:
        best = max((f for f in frames if f["time"] <= t), key=lambda f: f["time"], default=None)
        if best is not None:
            kept[id(best)] = best
    return sorted(kept.values(), key=lambda f: f["time"])


def trim(raw: pathlib.Path, out: pathlib.Path) -> str:
    """Keep PRE s before the marker to AFTER s after the moment the pictures show
    (screenshots.anchor); of the large payloads (STRIDE) one every few seconds, aligned
    on that moment so it keeps its own. Written as gzip with no name and no time in its
    header. Raises SystemExit saying what is missing (one session, the marker, a FAIL)."""
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import read_recording
    from screenshots import anchor

    load_payload_types()
    recording = read_recording(str(raw))
    if recording.stopped_at is not None or len(recording.headers) != 1:
        raise SystemExit(f"{raw}: {len(recording.headers)} sessions, damage {recording.stopped_at}")
    shown = anchor(sorted(recording.frames, key=lambda s: s.time))
    marker = next((s.time for s in recording.frames if s.source == "marker"), None)
    if shown is None or marker is None:
        raise SystemExit(f"{raw}: no marker followed by a FAIL verdict and a Flows sample after it")
    start, end = marker - PRE, shown.time + AFTER
    objs = read_lines(raw)
    frames = [o for o in objs[1:] if start <= o["time"] <= end]
    kept = [f for f in frames if f["source"] not in STRIDE]
    for source, stride in STRIDE.items():
        times = [
            shown.time + k * stride
            for k in range(-int((shown.time - start) // stride), 1 + int(AFTER // stride))
        ]
        kept += latest_before([f for f in frames if f["source"] == source], times)
    kept.sort(key=lambda f: f["time"])
    header = dict(objs[0], started=round(kept[0]["time"], 3))
    size = write_gz([header, *kept], out)
    return (
        f"{len(kept)} of {len(objs) - 1} snapshots, {kept[-1]['time'] - kept[0]['time']:.0f} s "
        f"(marker at +{marker - kept[0]['time']:.0f} s, pictures at +{shown.time - kept[0]['time']:.0f} s), "
        f"{size / 1e6:.1f} MB -> {out.stat().st_size / 1e3:.0f} KB gz"
    )


# --- the lab and the dashboard (root) ----------------------------------------------------


def rules_text(lab: Any) -> str:
    client, lb, stable, canary = (lab.addr(p) for p in ("client", "lb", "stable", "canary"))
    port, front = lab.config.service_port, lab.config.app_port
    # The deny first: the first matching rule wins, and the count on the canary's port
    # would otherwise take the stray client's packets too.
    return (
        f"deny tcp from {client} to {canary} port {port} on {lab.veth('canary')} "
        '"clients go through HAProxy"\n'
        f'count tcp to {lb} port {front} on {lab.veth("client")} "checkout frontend (HAProxy)"\n'
        f'count tcp to {stable} port {port} on {lab.veth("stable")} "checkout stable v1.0.0"\n'
        f'count tcp to {canary} port {port} on {lab.veth("canary")} "checkout canary v1.1.0"\n'
    )


# A client that goes around HAProxy: a few connects a second straight to the canary,
# each a SYN the deny drops.
STRAY = (
    "import socket, sys, time\n"
    "while True:\n"
    "    try:\n"
    "        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.25).close()\n"
    "    except OSError:\n"
    "        pass\n"
    "    time.sleep(0.25)\n"
)


def header_lines(text: str) -> str:
    return "\n".join(text.split("\n")[:3])


def record(config: Any, raw: pathlib.Path) -> None:
    from pty_app import PtyApp

    from ebpftop.lab.layout import Layout

    lab = Layout(config)
    home = pathlib.Path(tempfile.mkdtemp(prefix="ebpftop-labrec-"))
    pins = f"/sys/fs/bpf/ebpftop-{config.name}rec/rules"
    conf = home / "config.toml"
    conf.write_text(
        f'[audit]\nlog = "{home}/audit.jsonl"\nkey = "{home}/audit.key"\n'
        f'[rules]\npin_dir = "{pins}"\nstate_dir = "{home}/rules"\n'
        f"ifaces = {json.dumps([lab.veth(p) for p in ('client', 'lb', 'stable', 'canary')])}\n"
    )
    conf.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SSH_")) and k != "SUDO_USER"}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    instance = ["--instance", config.name]
    cfg = ["--config", str(conf)]
    stray = app = None
    try:
        run([*CLI, *cfg, "rules", "flush", "--yes"], check=False, env=env)  # a crashed run's pins
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
            ],
            env=env,
        )
        (home / "rules.txt").write_text(rules_text(lab))
        run([*CLI, *cfg, "rules", "load", "--yes", str(home / "rules.txt")], env=env)
        stray = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.netns("client"),
                PY,
                "-c",
                STRAY,
                lab.addr("canary"),
                str(lab.config.service_port),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        keys = {"name": config.name, "subnet": config.subnet, "prometheus_port": config.prometheus_port}
        launcher = home / "ebpftop"
        launcher.write_text(LAUNCHER.format(python=PY))
        launcher.chmod(0o700)
        argv = [str(launcher), json.dumps(keys), *cfg, "--lab", "--record", str(raw)]
        say(f"$ ebpftop --lab --record {raw}  (instance {config.name}, in a {COLS}x{ROWS} pty)")
        app = PtyApp(argv, COLS, ROWS, env=env)
        wait(app, "the canary passing", lambda t: "PASS" in t and "Profiles" in t, STARTUP_TIMEOUT)
        say(f"baseline: {BASELINE:.0f} s")
        app.wait_for(lambda t: False, BASELINE)
        os.write(app.master, b"m")  # the pty's master is the app's terminal: keys as typed
        wait(app, "the marker prompt", lambda t: "Marker text" in t, 20)
        os.write(app.master, MARKER.encode() + b"\r")
        wait(app, "the marker's confirmation", lambda t: "y: confirm" in t, 20)
        os.write(app.master, b"y")
        app.wait_for(lambda t: False, 1.0)
        run([*CLI, "lab", "inject", *instance, "canary", *INCIDENT], env=env)
        wait(
            app, "the failing canary in the header", lambda t: "canary FAIL" in header_lines(t), FAIL_TIMEOUT
        )
        say(f"header: {header_lines(app.text()).splitlines()[1].strip()}; {TAIL:.0f} s more")
        app.wait_for(lambda t: False, TAIL)
    finally:
        if app is not None:
            app.close()
        if stray is not None:
            os.killpg(stray.pid, 15)
            stray.wait()
        run([*CLI, *cfg, "rules", "flush", "--yes"], check=False, env=env)
        run([*CLI, "lab", "down", *instance], check=False, env=env)
        shutil.rmtree(home, ignore_errors=True)
        with contextlib.suppress(OSError):  # flush removed the pins, not the folder we named
            os.rmdir(os.path.dirname(pins))


def other_labs(config: Any) -> list[str]:
    """Instances of other ebpftop labs up on this host (by their namespaces)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    names = {n.split("-")[1] for line in out.splitlines() if (n := line.split(" ")[0]).startswith("ebt-")}
    return sorted(names - {config.name})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    parser.add_argument("--keep-raw", type=pathlib.Path, help="also keep the untrimmed recording here")
    parser.add_argument("--trim", type=pathlib.Path, metavar="RAW", help="only trim this raw recording")
    parser.add_argument("--instance", default="pic")
    parser.add_argument("--subnet", default="198.18.233.0/24")
    parser.add_argument("--prometheus-port", type=int, default=19233)
    parser.add_argument(
        "--busy-ok", action="store_true", help="record even while other ebpftop labs run (they show in it)"
    )
    args = parser.parse_args(argv)
    if args.trim:
        say(trim(args.trim, args.out))
        return 0
    if os.geteuid() != 0:
        say("needs root (the lab, BPF): sudo .venv/bin/python scripts/make_lab_recording.py")
        return 2
    from ebpftop.lab.layout import LabConfig

    config = LabConfig(name=args.instance, subnet=args.subnet, prometheus_port=args.prometheus_port)
    others = other_labs(config)
    if others and not args.busy_ok:
        say(
            f"other labs are up ({', '.join(others)}): the BPF sources see the whole host, so their "
            "services and connections would be recorded too; stop them, or pass --busy-ok"
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="ebpftop-labrec-raw-") as tmp:
        raw = args.keep_raw or pathlib.Path(tmp) / "raw.rec.gz"
        if raw.exists():
            raw.unlink()
        record(config, raw)
        say(trim(raw, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
