"""Time to name an incident already under way -> `## triage: ...` of bench/RESULTS.md.

Needs root. On its own lab instance (tests/lab_scenarios.py: "sc"), for each scenario of
tests/test_lab_scenarios.py and for issue 19's own measurement (`lab inject canary
latency=300ms errors=5% cpu=on`, 60 s under way): set the fault up, wait until it shows
at its source and has run its time, then spawn `ebpftop --lab-instance sc` (the real CLI
process, as root, in a real pty at 160x48: bench/pty_app.py) and time, from the spawn,
the first full frame and the moment the screen names the incident (the header; for the
flood, which no alarm names, the Flows pane's first row being the flood). Three launches
per scenario into the same running incident; median and range.

Usage: sudo .venv/bin/python bench/triage_bench.py [--quick]   (--quick: one launch each)
       sudo .venv/bin/python bench/triage_bench.py --issue   (issue 19's case alone; prints,
            leaves bench/RESULTS.md as it is: a partial run must not replace the section)
       .venv/bin/python bench/triage_bench.py --render /tmp/ebpftop-triage-bench.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import lab_scenarios as sc  # noqa: E402
from pty_app import PtyApp  # noqa: E402
from results import machine, write_section  # noqa: E402

from ebpftop.lab import manager  # noqa: E402
from ebpftop.lab.layout import Layout  # noqa: E402

QUICK = "--quick" in sys.argv
ISSUE_ONLY = "--issue" in sys.argv
RENDER = sys.argv[sys.argv.index("--render") + 1] if "--render" in sys.argv else None
SAVED = Path(tempfile.gettempdir()) / "ebpftop-triage-bench.json"
LAUNCHES = 1 if QUICK else 3
NAME_TIMEOUT = 60.0  # a screen that never names it is reported as such, not waited on for ever
COLS, ROWS = 160, 48
GOAL_S = 3.0  # issue 19: opening into an ongoing failure, the header names it <= 3 s after the command
ISSUE_UNDER_WAY_S = 60.0  # as the issue measured it
TITLES = ("1 Flows", "2 Rules", "3 Canary", "4 Profiles")


def argv(home: str) -> list[str]:
    """`ebpftop --lab-instance sc` when this CLI has the flag; else the same CLI entry
    with the instance set the way tests set it (cli/options.py LAB_CONFIG)."""
    cli = [sys.executable, "-m", "ebpftop.cli.main"]
    audit = ["--audit-log", os.path.join(home, "audit.jsonl")]
    helped = subprocess.run([*cli, "--help"], capture_output=True, text=True, check=False).stdout
    if "--lab-instance" in helped:
        return [*cli, "--lab-instance", sc.CFG.name, *audit]
    code = (
        "import sys; from ebpftop.cli import options; from ebpftop.lab.layout import LabConfig; "
        f"options.LAB_CONFIG = LabConfig(**{_config()!r}); "
        "from ebpftop.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, "--lab", *audit]


def _config() -> dict:
    c = sc.CFG
    return {"name": c.name, "subnet": c.subnet, "prometheus_port": c.prometheus_port, "rate": c.rate,
            "weights": c.weights}  # fmt: skip


def named(scenario: sc.Scenario, layout: Layout):
    if scenario.name == "flood":
        flood = sc.flood_row(layout)
        return lambda text: bool(rows := sc.flow_rows(text)) and flood.search(rows[0]) is not None
    return lambda text: sc.names(scenario, text)


def full_frame(text: str) -> bool:
    return all(t in text for t in TITLES) and "Quit" in text


def launch(cmd: list[str], home: str, scenario: sc.Scenario, layout: Layout) -> dict:
    app = PtyApp(cmd, COLS, ROWS, env={"HOME": home, "XDG_CONFIG_HOME": home})
    try:
        frame = app.wait_for(full_frame, NAME_TIMEOUT)
        name = app.wait_for(named(scenario, layout), NAME_TIMEOUT) if frame is not None else None
        said = sc.header(app.text())
        if scenario.name == "flood":
            said = (sc.flow_rows(app.text()) or [""])[0]
        return {"frame_s": frame, "name_s": name, "said": said, "load": os.getloadavg()[0]}
    finally:
        tree = app.tree()
        app.close()
        for p in tree:  # what outlived the SIGTERM to the group
            if p.is_running():
                p.kill()


def scenario_run(s: sc.Scenario, cmd: list[str], home: str, under_way_s: float) -> dict:
    layout = Layout(sc.CFG)
    sc.clear()
    sc.poll(lambda: sc.recovered(layout), f"{s.name}: the lab recovered", seconds=300.0)
    started = time.monotonic()
    for args in s.inject:
        sc.inject(*args)
    try:
        sc.under_way(s, started, run_s=under_way_s)
        runs = [launch(cmd, home, s, layout) for _ in range(LAUNCHES)]
    finally:
        for args in s.undo:
            sc.inject(*args)
    row = {"name": s.name, "what": s.what, "inject": [" ".join(a) for a in s.inject], "runs": runs}
    row["under_way_s"] = under_way_s
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    if RENDER:
        return render(json.loads(Path(RENDER).read_text()))
    if os.geteuid() != 0:
        print("triage_bench: needs root", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ebpftop-triage-bench-") as home:
        cmd = argv(home)
        try:
            manager.up(sc.CFG, print)
            for s in () if ISSUE_ONLY else sc.SCENARIOS.values():
                rows.append(scenario_run(s, cmd, home, sc.UNDER_WAY_S))
            rows.append(scenario_run(sc.ISSUE, cmd, home, ISSUE_UNDER_WAY_S))
        finally:
            manager.down(sc.CFG)
    figures = {
        "machine": machine(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "rows": rows,
        "launches": LAUNCHES,
        "cmd": f"ebpftop --lab-instance {sc.CFG.name}"
        if "--lab-instance" in cmd
        else f"python -c '<ebpftop's CLI main, lab {sc.CFG.name}>' --lab",
    }
    if ISSUE_ONLY:
        print(json.dumps(figures))
        return 0
    SAVED.write_text(json.dumps(figures))
    return render(figures)


def spread(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never (within 60 s)"
    missed = len(values) - len(got)
    text = f"{statistics.median(got):.2f} s ({min(got):.2f}-{max(got):.2f})"
    return text + (f", {missed} of {len(values)} never" if missed else "")


def render(f: dict) -> int:
    rows = f["rows"]
    load_start, load_end = f["load_start"], f["load_end"]
    loads = [r["load"] for row in rows for r in row["runs"]]
    busy = max([*loads, load_start[0]]) > 1.0
    lines = [
        f"Machine: {f['machine']}. Run: `sudo .venv/bin/python bench/triage_bench.py"
        f"{' --quick' if f['launches'] == 1 else ''}`.",
        f"Load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}, "
        f"at the launches {min(loads):.1f}-{max(loads):.1f}"
        + (
            "; not an idle machine (2 CPUs; the lab's own load generator, services, canary `cpu=on` "
            "and flood run on them, and anything else running then): times include waiting for a CPU."
            if busy
            else "."
        ),
        "",
        "Each scenario is a fault of its own lab instance (tests/lab_scenarios.py), set up and left "
        "running until it shows at its source",
        "(the canary verdict from Prometheus, HAProxy's server state, the link's byte counter) and "
        "then for the time under way;",
        f"then `{f['cmd']}` (the real CLI, as root) is spawned in a real pty at {COLS}x{ROWS}, "
        f"{f['launches']} times into the same incident.",
        "*Named*: seconds from the spawn until the header names the incident (for the flood, which no "
        "alarm names: until the",
        "Flows pane's first row is the flood); *frame*: until the whole layout is on screen. Median (range).",
        "",
        "| scenario | fault (`ebpftop lab inject ...`) | under way | frame | named | named - frame "
        "| what the screen said |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        named_runs = [r for r in row["runs"] if r["name_s"] is not None] or row["runs"]
        said = _said(row["name"], named_runs[0]["said"])
        lines.append(
            f"| {row['name']} | `{'; '.join(row['inject'])}` | {row['under_way_s']:.0f} s "
            f"| {spread([r['frame_s'] for r in row['runs']])} | {spread([r['name_s'] for r in row['runs']])} "
            f"| {spread([_after(r) for r in row['runs']])} | {said} |"
        )
    issue = next(r for r in rows if r["name"] == sc.ISSUE.name)
    times = [r["name_s"] for r in issue["runs"]]
    got = [t for t in times if t is not None]
    verdict = "met" if got and len(got) == len(times) and statistics.median(got) <= GOAL_S else "NOT met"
    lines += [
        "",
        f"Launch into failure (issue 19's measurement, {issue['under_way_s']:.0f} s under way): "
        f"the header names the failing canary {spread(times)} after the command; goal <= {GOAL_S:g} s: "
        f"{verdict} (median).",
        "On a loaded machine the spawn-to-frame time (Python start, imports, `lab up`'s check, "
        "the first frame) dominates, and",
        "it is what the load stretches (`## dashboard` has the first frame on a quiet machine); "
        "*named - frame* is the part the",
        "verdict itself takes once the app runs: the canary's from Prometheus history, "
        "HAProxy's server state, the flows' first sample",
        "(BPF compiled: the flood, whose first row shows before its rates, `—`, ordered by "
        "its bytes so far).",
        "",
        "Raw figures: /tmp/ebpftop-triage-bench.json; `--render FILE` writes this section again from them.",
    ]
    write_section("triage: time to name an incident already under way", "\n".join(lines))
    print("\n".join(lines))
    return 0


def _after(run: dict) -> float | None:
    """Seconds the name came after the whole layout: the verdict's own delay, apart from
    the process's start (which a loaded machine stretches)."""
    if run["name_s"] is None or run["frame_s"] is None:
        return None
    return float(run["name_s"]) - float(run["frame_s"])


def _said(name: str, header: str) -> str:
    """The part of the header (or row) that names it, without the host line."""
    if name == "flood":
        return f"first Flows row: `{header.strip()}`"
    at = header.find("✖")
    text = header[at:] if at >= 0 else header
    return text.replace("|", "/")[:160]


if __name__ == "__main__":
    sys.exit(main())
