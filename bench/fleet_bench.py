"""Fleet: from `lab inject node2 retransmits=on` to the bad node ranked first
-> `## fleet: ...` of bench/RESULTS.md.

Needs root. Its own lab instance ("fb", 3 nodes: three real agents with BPF, scraped every
second by the lab's Prometheus). `ebpftop --fleet URL` runs as the user runs it (the real
CLI process in a real pty, 120x30, defaults: a 1m rate window, queries every 2 s); beside
it, on the same Prometheus and the same injection, what an operator would otherwise do:
poll Prometheus itself with `topk(1, sum by (node) (rate(ebpftop_tcp_retransmits_total[1m])))`
every 0.25 s (the floor: Prometheus has the symptom then, and no view can name it sooner).
Each run: inject, time both until node2 is first (the view: its top row, with the reason
naming retransmits), turn it off, wait until no node has retransmits in the window.
Also the view's own CPU over the runs and the agents' cost while they are scraped.

Usage: sudo .venv/bin/python bench/fleet_bench.py [--runs N]
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402
from pty_app import VENV_BIN, PtyApp  # noqa: E402
from results import machine, write_section  # noqa: E402

from ebpftop.cli.main import main as cli_main  # noqa: E402
from ebpftop.lab import manager, nodes  # noqa: E402
from ebpftop.lab.layout import LabConfig, Layout  # noqa: E402

RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
CFG = LabConfig(name="fb", subnet="198.18.241.0/24", prometheus_port=19241, rate=10, nodes=3)
GOAL_S = 10.0  # issue 23: ranked first within 10 s
TIMEOUT = 90.0
ROW = re.compile(r"^\W*(node\d)\s+(up|DOWN|part|\?)\s(.*)$", re.M)
TOPK = "topk(1, sum by (node) (rate(ebpftop_tcp_retransmits_total[1m])))"


def query(url: str, promql: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def top_by_prometheus(url: str) -> str:
    got = [r for r in query(url, TOPK) if float(r["value"][1]) > 0]
    return got[0]["metric"].get("node", "") if got else ""


def top_in_view(text: str) -> tuple[str, str]:
    m = ROW.search(text)
    return (m.group(1), m.group(3)) if m else ("", "")


def inject(*terms: str) -> None:
    assert cli_main(["lab", "inject", "--instance", CFG.name, *terms]) == 0


def one_run(view: PtyApp, url: str) -> dict:
    t0 = time.monotonic()
    inject("node2", "retransmits=on")
    prom_at = view_at = None
    while time.monotonic() - t0 < TIMEOUT and (prom_at is None or view_at is None):
        view.pump(0.25)
        now = time.monotonic() - t0
        if prom_at is None and top_by_prometheus(url) == "node2":
            prom_at = now
        node, rest = top_in_view(view.text())
        if view_at is None and node == "node2" and "retransmits" in rest:
            view_at = now
    inject("node2", "retransmits=off")
    # wait for the window to forget it: no node's retransmit rate above zero
    end = time.monotonic() + 150
    while time.monotonic() < end and top_by_prometheus(url):
        view.pump(1.0)
    return {"prometheus_s": prom_at, "view_s": view_at}


def main() -> int:
    manager.up(CFG)
    try:
        url = Layout(CFG).prometheus_url
        end = time.monotonic() + 180
        while time.monotonic() < end and len(query(url, 'up{job="ebpftop"} == 1')) < 3:
            time.sleep(1)
        home = tempfile.mkdtemp(prefix="fleet-bench-")
        cfg = Path(home) / "ebpftop.toml"
        cfg.write_text(f'[audit]\nlog = "{home}/audit.jsonl"\nkey = "{home}/audit.key"\n')
        cfg.chmod(0o600)
        view = PtyApp([str(VENV_BIN / "ebpftop"), "--config", str(cfg), "--fleet", url], cols=120, rows=30)
        try:
            assert view.wait_for(lambda t: "3 nodes" in t, 120) is not None, view.text()
            quiet = time.monotonic() + 65  # a full rate window of a quiet fleet before the first injection
            while time.monotonic() < quiet:
                view.pump(0.5)
            cpu0, w0 = view.cpu_seconds(), time.monotonic()
            runs = [one_run(view, url) for _ in range(RUNS)]
            view_cpu = 100 * (view.cpu_seconds() - cpu0) / (time.monotonic() - w0)
            rss = sum(p.memory_info().rss for p in view.tree())
        finally:
            view.close()
        agent_cpu = agents_cpu()
    finally:
        manager.down(CFG)
    render(runs, view_cpu, rss, agent_cpu)
    return 0


def agents_cpu(seconds: float = 10.0) -> list[float]:
    """CPU % (of one CPU) of each node's agent, over `seconds`."""
    sockets = {n.agent_socket for n in nodes.nodes(CFG)}
    procs = [p for p in psutil.process_iter(["cmdline"]) if sockets & set(p.info["cmdline"] or [])]
    for p in procs:
        p.cpu_percent(interval=None)
    time.sleep(seconds)
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(p.cpu_percent(interval=None))
    return out


def _fmt(v: float | None) -> str:
    return "not within 90 s" if v is None else f"{v:.1f} s"


def render(runs: list[dict], view_cpu: float, rss: int, agent_cpu: list[float]) -> None:
    load = psutil.getloadavg()
    lines = [
        f"Machine: {machine()}. `bench/fleet_bench.py`: lab instance with 3 nodes (3 real agents, "
        "each with its pod's traffic, scraped every 1 s by the lab's Prometheus); "
        f"{len(runs)} runs of `lab inject node2 retransmits=on` (random loss of the pod's TCP packets) "
        "then off, waiting for the window to forget between runs. Load average at the end: "
        f"{load[0]:.2f} on {psutil.cpu_count()} CPUs.",
        "",
        "| run | Prometheus itself: topk(1) of the retransmit rate is node2 "
        "| `ebpftop --fleet URL`: node2 on top, why names retransmits |",
        "|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {_fmt(r['prometheus_s'])} | {_fmt(r['view_s'])} |")
    done = [r["view_s"] for r in runs if r["view_s"] is not None]
    floor = [r["prometheus_s"] for r in runs if r["prometheus_s"] is not None]
    lines += [
        "",
        f"- Median: the view {statistics.median(done):.1f} s, Prometheus itself "
        f"{statistics.median(floor):.1f} s (goal: ranked first within {GOAL_S:g} s)."
        if done and floor
        else "- A run did not rank node2 first within 90 s.",
        "- What the view adds to the floor: Prometheus' topk names node2 at its first retransmits; the view "
        "ranks a node by a column only once its rate over the 1m window reaches the column's floor (0.1 "
        "retransmits/s: 6 in the window) and 3x the other nodes' median, then up to one query interval "
        "([fleet] interval, 2 s) and a frame.",
        f"- The view's own cost over the runs: {view_cpu:.1f}% of one CPU, RSS {rss / 2**20:.0f} MiB "
        "(11 instant queries every 2 s).",
    ]
    if agent_cpu:
        lines.append(
            f"- The node agents while scraped (profiles off, 1 s refresh): {statistics.mean(agent_cpu):.1f}% "
            "of one CPU each (the lab's nodes share one kernel: each agent sees every node's TCP events); "
            'the scrape itself: section "metrics: the agent\'s scrape".'
        )
    write_section("fleet: a bad node ranked first", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
