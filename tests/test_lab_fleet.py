"""Issue 23's "Done when", in the lab: `lab up --nodes 3`, one node made bad, and
`ebpftop --fleet http://127.0.0.1:<lab prometheus>` (the real command, in a real pty)
ranks that node first, naming the symptom; an agent killed on another node goes to the
top as "agent down". Three real agents with real BPF, scraped by the lab's Prometheus.

The time from the injection to the ranking is a figure of bench/fleet_bench.py, not an
assertion here: every wait below is a poll with a generous bound. Own lab instance "fl".
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from labs import running_lab

from ebpftop.cli.main import main as cli_main
from ebpftop.lab import prometheus
from ebpftop.lab.layout import LabConfig, Layout

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from pty_app import VENV_BIN, PtyApp

CFG = LabConfig(name="fl", subnet="198.18.240.0/24", prometheus_port=19240, rate=10, nodes=3)
EBPFTOP = str(VENV_BIN / "ebpftop")
ROW = re.compile(r"^\W*(node\d)\s+(up|DOWN|part|\?)\s", re.M)


@pytest.fixture(scope="module")
def lab():
    with running_lab(CFG) as layout:
        yield layout


def rows(text: str) -> list[tuple[str, str]]:
    """(node, agent) of the fleet table's rows, top first."""
    return [(m.group(1), m.group(2)) for m in ROW.finditer(text)]


def row_line(text: str, node: str) -> str:
    return next((line for line in text.splitlines() if re.search(rf"\b{node}\s+(up|DOWN|part)", line)), "")


def inject(*terms: str) -> None:
    assert cli_main(["lab", "inject", "--instance", CFG.name, *terms]) == 0


def all_agents_scraped(url: str) -> bool:
    try:
        got = prometheus.PrometheusAPI(url, timeout=5.0).query('up{job="ebpftop"} == 1')
    except Exception:
        return False
    return len(got) == 3


def test_the_fleet_view_ranks_the_bad_node_first_naming_its_symptom(lab, tmp_path):
    url = Layout(CFG).prometheus_url
    end = time.monotonic() + 180
    while not all_agents_scraped(url) and time.monotonic() < end:
        time.sleep(1)
    assert all_agents_scraped(url), "the lab's three agents are not all scraped"
    config = tmp_path / "ebpftop.toml"
    config.write_text(f'[audit]\nlog = "{tmp_path}/audit.jsonl"\nkey = "{tmp_path}/audit.key"\n')
    config.chmod(0o600)
    view = PtyApp([EBPFTOP, "--config", str(config), "--fleet", url], cols=120, rows=30)
    try:
        assert view.wait_for(lambda t: len(rows(t)) == 3 and "3 nodes" in t, 120) is not None, view.text()
        assert {n for n, a in rows(view.text())} == {"node1", "node2", "node3"}
        assert all(a == "up" for _, a in rows(view.text())), view.text()

        inject("node2", "retransmits=on")
        try:
            assert view.wait_for(
                lambda t: rows(t)[:1] == [("node2", "up")] and "retransmits" in row_line(t, "node2"), 120
            ), view.text()
            # the header names it too, without a keypress
            assert "node2: retransmits" in view.text(), view.text()
            # Enter: how to reach it, from the lab's node address
            os.write(view.master, b"\r")
            assert view.wait_for(lambda t: "shell on the node" in t and "ssh -t 198.18.240." in t, 30), (
                view.text()
            )
            os.write(view.master, b"\x1b")
            assert view.wait_for(lambda t: "shell on the node" not in t, 30), view.text()

            # an agent that dies goes above everything, whatever its numbers were
            inject("node3", "agent=down")
            assert view.wait_for(lambda t: rows(t)[:1] == [("node3", "DOWN")], 120), view.text()
            assert "agent down" in row_line(view.text(), "node3")
        finally:
            inject("node3", "agent=up")
            inject("node2", "retransmits=off")
    finally:
        view.close()
