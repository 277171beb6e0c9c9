"""The dashboard as people run it, beside iftop and nethogs -> `## dashboard` of bench/RESULTS.md.

Needs root. Namespace b floods namespace a over a veth link (tests/netns.py) with paced
UDP, one datagram per flow per second, at 0 / 1k / 10k / 60k flows. At each count, on the
same running flood and one after the other:
1. the whole dashboard (`python -m ebpftop.cli.main --iface IF` as root in namespace a:
   every default source on, profiles at their default 49 Hz) in a real pty at 160x48:
   CPU of its process tree (the bcc symbol helper is a child) and bytes written to the
   terminal, over a window after a warm-up;
2. `iftop -t` on the same interface (as bench/flows_bench.py runs it): CPU;
3. `nethogs -t` on the same interface: CPU.
Before the flood: the first full frame, from spawning the dashboard until the screen
shows the whole layout (the header with the host name, the four panes with their health
line, the footer's keys) while BPF compiles behind it; and when the Flows pane first
shows its table (its first sample) (3 launches).

Usage: sudo .venv/bin/python bench/dashboard_bench.py [--quick]
       .venv/bin/python bench/dashboard_bench.py --render /tmp/ebpftop-dashboard-bench.json  (no measuring)
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from app_bench import TITLES  # noqa: E402
from flows_bench import FLOODER, cpu_percent, stop  # noqa: E402
from netns import PYTHON, veth_pair  # noqa: E402
from pty_app import PtyApp  # noqa: E402
from results import machine, write_section  # noqa: E402

QUICK = "--quick" in sys.argv
RENDER = sys.argv[sys.argv.index("--render") + 1] if "--render" in sys.argv else None
SAVED = Path(tempfile.gettempdir()) / "ebpftop-dashboard-bench.json"  # the last run's figures, for --render
FLOW_COUNTS = (0, 1000, 10000, 60000)
WINDOW = 6 if QUICK else 20
WARMUP = 4 if QUICK else 8  # after the first full frame: BPF compiles and first samples settle
TOOL_WARMUP = 2 if QUICK else 4
FIRST_FRAMES = 3
FRAME_TIMEOUT = 60  # a dashboard that never draws its Flows header is reported, not waited on for ever
COLS, ROWS = 160, 48
GOALS = {"idle": 1.0, "10k": 3.0, "ratio": 0.2, "60k": 6.0, "kbps": 30.0, "first": 1.0}

# A header row of the flows table in either layout (compact: "B/s pkt/s", full: "bytes/s pkts/s").
HOST = os.uname().nodename
FLOWS_HEADER = re.compile(r"(B/s|bytes/s)\S*\s+(pkt/s|pkts/s)\S*.*\bprocess\b")


def flows_pane(text: str) -> list[str]:
    """The inside of the box titled Flows: the columns between its corners, the lines
    down to its bottom border."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        title = line.find(" Flows ")
        if title < 0 or "╭" not in line[:title]:
            continue
        left = line.rfind("╭", 0, title)
        right = line.find("╮", title)
        inside = []
        for below in lines[i + 1 :]:
            part = below[left:right]
            if part.startswith("╰"):
                break
            inside.append(part)
        return inside
    return []


def full_frame(text: str) -> bool:
    """The whole layout: header (host name), four panes, each with its health line
    (a badge or "STARTING"), the footer's keys."""
    badges = sum(text.count(b) for b in ("STARTING", "● OK", "▲ DEGRADED", "✖ DOWN", "○ OFF"))
    return all(t in text for t in TITLES) and HOST in text and "Quit" in text and badges >= len(TITLES)


def flows_table(text: str) -> bool:
    return any(FLOWS_HEADER.search(ln) for ln in flows_pane(text))


def rx_packets(net) -> int:
    return int(net.a.run("cat", f"/sys/class/net/{net.a_if}/statistics/rx_packets").stdout)


def launch(net, home: str, *extra: str) -> PtyApp:
    argv = net.a.cmd(PYTHON, "-m", "ebpftop.cli.main", "--iface", net.a_if, *extra, bpf=True)
    # a private HOME: no user's config file changes what is measured
    return PtyApp(argv, COLS, ROWS, env={"HOME": home, "XDG_CONFIG_HOME": home})


def close(app: PtyApp) -> float:
    """SIGTERM to the process group, wait, kill what remains; seconds the exit took."""
    tree = app.tree()
    t0 = time.monotonic()
    app.close()
    took = time.monotonic() - t0
    for p in tree:
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
            p.kill()
    return took


def titles(text: str) -> bool:
    return all(t in text for t in TITLES)


def wait_frame(app: PtyApp) -> dict:
    """When the four pane titles showed, the whole layout, then the Flows table (its first
    sample); the screen and the exit status when the table never came."""
    got = {"titles_s": app.wait_for(titles, FRAME_TIMEOUT)}
    got["first_frame_s"] = app.wait_for(full_frame, FRAME_TIMEOUT) if got["titles_s"] is not None else None
    got["flows_s"] = app.wait_for(flows_table, FRAME_TIMEOUT) if got["first_frame_s"] is not None else None
    if got["flows_s"] is None:
        got["screen"], got["exited"] = app.text(), app.proc.poll()
    return got


def first_frame(net, home: str) -> dict:
    app = launch(net, home)
    try:
        got = wait_frame(app)
    finally:
        got["exit_s"] = close(app)
    return got


def dashboard(net, home: str, *extra: str) -> dict:
    app = launch(net, home, *extra)
    try:
        frame = wait_frame(app)
        app.pump(WARMUP, render=False)  # keep reading: a full pty blocks the app
        rx0, cpu0, b0, t0 = rx_packets(net), app.cpu_seconds(), app.bytes_read, time.monotonic()
        load = os.getloadavg()[0]
        app.pump(WINDOW, render=False)
        rx1, cpu1, b1, t1 = rx_packets(net), app.cpu_seconds(), app.bytes_read, time.monotonic()
        alive = app.proc.poll() is None
    finally:
        exit_s = close(app)
    return {
        **frame,
        "cpu": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "bytes_per_s": (b1 - b0) / (t1 - t0),
        "rx_per_s": (rx1 - rx0) / (t1 - t0),
        "load": load,
        "alive": alive,
        "exit_s": exit_s,
    }


def bpf_loaded(pid: int) -> bool:
    """The process holds a BPF program: its compile is over."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf-prog":
                return True
        except OSError:
            continue
    return False


def headless_flows(net, home: str) -> float:
    """CPU of the flows collector alone, no UI: `snapshot --source flows` over the window
    (after the same warm-up as the dashboard: BPF compiled, samples settled)."""
    argv = ("snapshot", "--source", "flows", "--duration", str(FRAME_TIMEOUT + WARMUP + WINDOW))
    p = net.a.popen(
        PYTHON, "-m", "ebpftop.cli.main", "--iface", net.a_if, *argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HOME": home}, bpf=True,
    )  # fmt: skip
    try:
        loaded = time.monotonic() + FRAME_TIMEOUT
        while not bpf_loaded(p.pid) and time.monotonic() < loaded and p.poll() is None:
            time.sleep(0.2)  # compiling: the dashboard's frame wait covers the same
        time.sleep(WARMUP)
        if p.poll() is not None:
            raise RuntimeError(f"snapshot exited with {p.returncode}: {p.stderr.read()[-2000:]}")
        return cpu_percent(p.pid, WINDOW)
    finally:
        stop(p)


def tool_cpu(net, *argv: str) -> float:
    p = net.a.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(TOOL_WARMUP)
        if p.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {p.returncode}: {p.stderr.read()[-2000:]}")
        return cpu_percent(p.pid, WINDOW)
    finally:
        stop(p)


def main() -> int:
    if RENDER:  # the section again from a saved run's figures (after a change of wording)
        return render(json.loads(Path(RENDER).read_text()))
    if os.geteuid() != 0:
        print("dashboard_bench: needs root", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ebpftop-dashboard-bench-") as home, veth_pair("ebdb") as net:
        firsts = [first_frame(net, home) for _ in range(FIRST_FRAMES)]
        for count in FLOW_COUNTS:
            flood = net.b.python(FLOODER, net.a_ip4, str(count)) if count else None
            try:
                ours = dashboard(net, home)
                # where its CPU goes: the same dashboard without the profiler, and the flows
                # collector alone without any UI
                no_profiles = dashboard(net, home, "--profile-hz", "0")["cpu"]
                collector = headless_flows(net, home)
                iftop = tool_cpu(
                    net,
                    *("iftop", "-t", "-n", "-N", "-P", "-B", "-i", net.a_if),
                    *("-s", str(WINDOW + TOOL_WARMUP + 5)),
                )
                # -C: nethogs watches TCP only unless told; the traffic here is UDP
                nethogs = tool_cpu(net, "nethogs", "-t", "-C", "-d", "1", net.a_if)
            finally:
                if flood is not None:
                    flood.kill()
                    flood.communicate()
            rows.append(
                {
                    "flows": count,
                    "ebpftop": ours,
                    "no_profiles": no_profiles,
                    "collector": collector,
                    "iftop": iftop,
                    "nethogs": nethogs,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    figures = {
        "machine": machine(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "firsts": firsts,
        "rows": rows,
        "quick": QUICK,
        "window": WINDOW,
        "warmup": WARMUP,
    }
    SAVED.write_text(json.dumps(figures))
    return render(figures)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs >= 0.05 else "—"


def render(f: dict) -> int:
    rows, firsts = f["rows"], f["firsts"]
    load_start, load_end = f["load_start"], f["load_end"]
    # the end figure includes this bench's own flood and dashboard; only the start says
    # whether anyone else was using the machine
    busy = load_start[0] > 0.5
    lines = [
        f"Machine: {f['machine']}. "
        f"Run: `sudo .venv/bin/python bench/dashboard_bench.py{' --quick' if f['quick'] else ''}`.",
        f"Load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f} "
        "(the end includes this bench's own flood)"
        + (
            "; NOT a quiet machine: other people's tests and benchmarks ran alongside, "
            "so these figures are not the final ones."
            if busy
            else "; a quiet machine."
        ),
        "",
        "Namespace b floods namespace a over a veth link: N UDP flows, one 64-byte datagram per flow "
        "per second. At each N,",
        "on the same flood and one after the other: the dashboard as root "
        "(`python -m ebpftop.cli.main --iface IF`: every",
        f"default source on, profiles at 49 Hz) in a real pty at {COLS}x{ROWS}, "
        f"measured over {f['window']} s after the first full frame",
        f"and a {f['warmup']} s warm-up: CPU of its process tree "
        "(the bcc symbol helper is a child), bytes read from the pty;",
        f"then `iftop -t -n -N -P -B -i IF` and `nethogs -t -C -d 1 IF` (each in namespace a): CPU "
        f"over {f['window']} s.",
        "CPU is % of one core.",
        "",
        "| flows | ebpftop CPU | ebpftop terminal KB/s | iftop CPU | nethogs CPU "
        "| ebpftop/iftop | ebpftop/nethogs |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e = r["ebpftop"]
        lines.append(
            f"| {r['flows']} | {e['cpu']:.1f}% | {e['bytes_per_s'] / 1000:.1f} | {r['iftop']:.1f}% "
            f"| {r['nethogs']:.1f}% | {ratio(e['cpu'], r['iftop'])} | {ratio(e['cpu'], r['nethogs'])} |"
        )
    if all("collector" in r for r in rows):
        lines += [
            "",
            "Where the dashboard's CPU goes, on the same flood right after: the same dashboard with "
            "`--profile-hz 0` (no CPU profiler),",
            "and the flows collector alone without any UI (`ebpftop snapshot --source flows`, its "
            "process over the same window).",
            "",
            "| flows | whole dashboard | without profiler | profiler's share | flows collector alone "
            "| the rest: drawing, host/rules/canary sources |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            whole, bare, alone = r["ebpftop"]["cpu"], r["no_profiles"], r["collector"]
            lines.append(
                f"| {r['flows']} | {whole:.1f}% | {bare:.1f}% | {whole - bare:.1f}% | {alone:.1f}% "
                f"| {bare - alone:.1f}% |"
            )
    lines += [
        "",
        "Datagrams/s received by namespace a in each dashboard window (what the flood reached): "
        + ", ".join(f"{r['flows']} flows {r['ebpftop']['rx_per_s']:.0f}" for r in rows)
        + ". Load average (1 min) at each window's start: "
        + ", ".join(f"{r['ebpftop']['load']:.1f}" for r in rows)
        + ".",
    ]

    def when(x: dict, key: str) -> str:
        return "—" if x.get(key) is None else f"{x[key]:.2f}"

    lines.append(
        "First full frame, no traffic, seconds from spawning the dashboard (interpreter start and "
        "`ip netns exec` included) to the four pane titles / the whole layout with every health "
        "line (the goal) / the Flows table's first sample (BPF compiled, map read): "
        + ", ".join(
            f"{when(x, 'titles_s')} / {when(x, 'first_frame_s')} / {when(x, 'flows_s')}" for x in firsts
        )
        + ". At each flow count (the measured launches), layout / Flows table: "
        + ", ".join(
            f"{r['flows']}: {when(r['ebpftop'], 'first_frame_s')} / {when(r['ebpftop'], 'flows_s')}"
            for r in rows
        )
        + "."
    )
    for x in [*firsts, *(r["ebpftop"] for r in rows)]:
        if x.get("flows_s") is None and x.get("exited") is not None:
            last = ([ln.strip() for ln in x["screen"].splitlines() if ln.strip()] or [""])[-1]
            lines.append(f"A launch exited (status {x['exited']}) before its first full frame: `{last}`.")
    late = [r["flows"] for r in rows if r["ebpftop"].get("flows_s") is None]
    dead = [r["flows"] for r in rows if not r["ebpftop"]["alive"]]
    if late:
        lines.append(f"The Flows table header did not show within {FRAME_TIMEOUT} s at {late} flows.")
    if dead:
        lines.append(f"The dashboard had exited before the end of its window at {dead} flows: no figure.")

    by = {r["flows"]: r for r in rows}
    verdict = {True: "met", False: "NOT met", None: "NOT measured"}
    goals: list[tuple[str, bool | None, str]] = []

    def check(flows: int, goal: str, ok: bool, figure: str) -> None:
        alive = by[flows]["ebpftop"]["alive"]
        goals.append((goal, ok if alive else None, figure if alive else "the dashboard exited"))

    if 0 in by:
        c = by[0]["ebpftop"]["cpu"]
        check(0, f"idle (no traffic) <= {GOALS['idle']:g}% of a core", c <= GOALS["idle"], f"{c:.1f}%")
    if 10000 in by:
        r = by[10000]
        c = r["ebpftop"]["cpu"]
        check(10000, f"~10k flows <= {GOALS['10k']:g}% of a core", c <= GOALS["10k"], f"{c:.1f}%")
        for tool in ("iftop", "nethogs"):
            check(
                10000,
                f"~10k flows <= {GOALS['ratio']:g}x {tool} on the same traffic",
                c <= GOALS["ratio"] * r[tool],
                f"{ratio(c, r[tool])} ({c:.1f}% vs {r[tool]:.1f}%)",
            )
        kb = r["ebpftop"]["bytes_per_s"] / 1000
        check(
            10000, f"terminal <= {GOALS['kbps']:g} KB/s at ~10k flows", kb <= GOALS["kbps"], f"{kb:.1f} KB/s"
        )
    if 60000 in by:
        c = by[60000]["ebpftop"]["cpu"]
        check(60000, f"~60k flows <= {GOALS['60k']:g}% of a core", c <= GOALS["60k"], f"{c:.1f}%")
    # a launch that never showed the frame counts as slower than any that did
    frame_s = [math.inf if x["first_frame_s"] is None else x["first_frame_s"] for x in firsts]
    median = statistics.median(frame_s)
    missing = sum(s == math.inf for s in frame_s)
    goals.append(
        (
            f"first full frame <= {GOALS['first']:g} s (median of {len(frame_s)})",
            median <= GOALS["first"],
            (f"{median:.2f} s" if median < math.inf else "—")
            + (f"; not seen in {missing} of {len(frame_s)} launches" if missing else ""),
        )
    )
    lines += ["", "| goal (issue 18) | verdict | measured |", "|---|---|---|"]
    for goal, ok, figure in goals:
        lines.append(f"| {goal} | {verdict[ok]} | {figure} |")
    lines += why_not(by, goals)
    lines += NOTES
    write_section("dashboard", "\n".join(lines))
    print("\n".join(lines))
    return 0


def why_not(by: dict, goals: list) -> list[str]:
    """For a CPU goal not met: where that CPU went, from the breakdown measured beside it."""
    missed = {goal for goal, ok, _f in goals if ok is False}
    out: list[str] = []

    def split(flows: int) -> tuple[float, float, float, float] | None:
        r = by.get(flows)
        if r is None or "collector" not in r:
            return None
        whole, bare, alone = r["ebpftop"]["cpu"], r["no_profiles"], r["collector"]
        return whole, max(0.0, whole - bare), alone, max(0.0, bare - alone)

    for flows, label in ((0, "idle"), (10000, "~10k flows"), (60000, "~60k flows")):
        parts = split(flows)
        if parts is None or not any(g.startswith(label) and "of a core" in g for g in missed):
            continue
        whole, prof, alone, rest = parts
        out.append(
            f"- {label}, {whole:.1f}%: the CPU profiler (49 Hz on every CPU) ~{prof:.1f}%, the flows "
            f"collector alone {alone:.1f}% (every map entry copied from the kernel and ranked each "
            f"second), drawing and the other sources ~{rest:.1f}%."
        )
    if out:
        out.insert(0, "")
        out.insert(1, "Why a CPU goal is not met, from the breakdown above (best reached: the figures):")
    return out


NOTES = [
    "",
    "Notes: the first full frame is the whole layout with every source's health line, drawn while",
    "BPF compiles behind it (the issue's definition: today 1.5 s in tmux); the Flows table's first",
    "sample follows once its program is compiled and attached. The footer's keys come one Textual",
    "refresh after the rest (its Footer waits for the screen's bindings) while the sources start:",
    "measured apart, the frame without them ~0.85-1.0 s, the keys ~0.12 s later with no source",
    "starting and ~0.2-0.3 s later while they start; the interpreter and imports take ~0.6 s of it.",
    "At ~60k flows the flows collector alone is above the goal: the map copy and the ranking of",
    "every entry each second, in Python; the kernel keeping the ranking is not asked by issue 18.",
    "The dashboard's CPU counts its helper processes, including any that exit during the window",
    "(their time moves to the parent's children times). The pty is read all the time (the app would",
    "block on a full pty); during the windows the bytes are counted, not rendered, so the terminal",
    "emulator does not compete for the two cores. nethogs needs -C to see UDP at all (it captures TCP",
    "only by default). Ratios are left out (—) where the tool's CPU is below 0.05%. Raw figures:",
    "/tmp/ebpftop-dashboard-bench.json; `--render FILE` writes this section again from them.",
]


if __name__ == "__main__":
    sys.exit(main())
