"""Issue 22's "Done when", all at once: one real agent (real BPF collectors, in a
namespace made here) and three viewers of it together, two terminals in real ptys and one
headless Chromium through `ebpftop serve`: they show the same flows, the node holds one set
of ebpftop programs (the agent's), and after SIGKILL of the agent nothing is left attached
and every viewer says AGENT DOWN. The 2 s figure is the bench's (bench/agent_bench.py);
here the wait is a generous bound on the condition.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
from cdp import CHROMIUM, chromium
from conftest import need, need_root
from test_agent import CLIENT, EBPFTOP, SERVER, PtyApp, _config, _flows, _held, _prog_names, _stable, _wait
from test_serve_browser import assert_kiosk_sessions, descendants, serve

pytestmark = pytest.mark.integration

BOUND = 120.0


async def every_screen(viewers: list[PtyApp], page, pred, what: str) -> list[str]:
    """Wait until `pred` holds on both ptys and the browser; fail with all three screens."""
    end = time.monotonic() + BOUND
    texts: list[str] = []
    while time.monotonic() < end:
        for v in viewers:
            v.pump(0.05)
        browser = await page.screen() or ""
        texts = [v.text() for v in viewers] + [browser]
        if all(pred(t) for t in texts):
            return texts
        await asyncio.sleep(0.1)
    raise AssertionError(f"not on every screen within {BOUND:g} s: {what}\n\n" + "\n\n----\n\n".join(texts))


async def test_an_agent_two_terminals_and_a_browser_one_collection_and_agent_down(tmp_path):
    need_root()
    need(CHROMIUM is not None, "chromium is not installed (scripts/setup.sh installs it)")
    from netns import veth_pair

    config = _config(tmp_path)
    sock = str(tmp_path / "run" / "agent.sock")
    sports = ("41011", "41012", "41013")
    viewers: list[PtyApp] = []
    with veth_pair("ebav") as net:
        with open(tmp_path / "agent.log", "w") as log:
            agent = net.a.popen(
                EBPFTOP, "--config", config, "--iface", net.a_if, "agent", "--socket", sock,
                bpf=True, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        net.b.python(SERVER, net.b_ip4, "7071")
        time.sleep(0.5)
        net.a.python(CLIENT, net.b_ip4, "7071", *sports)

        def ours(text: str) -> set[tuple[str, ...]]:
            return {f[2:] for f in _flows(text, sports) if f[3] == f"{net.b_ip4}:7071"}

        try:
            progs = _stable(
                lambda: {i for i, n in _prog_names(_held(agent.pid)).items() if "ebpftop_fl" in n}, 120
            )
            assert progs, (tmp_path / "agent.log").read_text()
            for _ in range(2):
                viewers.append(PtyApp([EBPFTOP, "--config", config, "--connect", sock], cols=200, rows=50))
            with serve(tmp_path, "--agent", sock) as served:
                async with chromium(width=1600, height=900) as page:
                    await page.open(served.url)
                    texts = await every_screen(
                        viewers, page, lambda t: "via agent" in t and len(ours(t)) == 3, "the three flows"
                    )
                    # the same flow rows (client port, server) on the three screens
                    assert ours(texts[0]) == ours(texts[1]) == ours(texts[2]), texts
                    assert_kiosk_sessions(served, count=1)
                    # one set of programs on the node: the agent's; no viewer holds a BPF object
                    others = [p.pid for v in viewers for p in v.tree()]
                    others += [pid for pid, _ in descendants(served.proc.pid)] + [served.proc.pid]
                    for pid in others:
                        assert not _held(pid) and not _held(pid, "map_id"), pid
                    assert {i for i, n in _prog_names(_held(agent.pid)).items() if "ebpftop_fl" in n} == progs

                    agent.send_signal(signal.SIGKILL)
                    agent.wait(10)
                    await every_screen(viewers, page, lambda t: "AGENT DOWN" in t, "AGENT DOWN")
                    assert _wait(lambda: not _prog_names(progs), 30), _prog_names(progs)
                    links = net.a.run("bpftool", "net", "show", "dev", net.a_if, bpf=True).stdout
                    assert "ebpftop" not in links, links
        finally:
            for v in viewers:
                v.close()
            if agent.poll() is None:
                agent.kill()
                agent.wait(30)
