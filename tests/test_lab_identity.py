"""Every flow of the lab's parts is owned on both sides, with its service, track and
cgroup identity: the lab runs each part in its own network namespace AND its own cgroup
(lab/cgroups.py), and the flows collector, with BPF on the lab's links as `ebpftop
--lab` wires it, names both ends of every connection between them.

Its own lab instance ("id"), so a developer's lab keeps running. Waits are polls with a
generous deadline.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import need
from labs import running_lab

from ebpftop.collectors.flows.collector import FlowsCollector
from ebpftop.core.settings import Settings
from ebpftop.lab import cgroups, manager
from ebpftop.lab.layout import LabConfig

pytestmark = pytest.mark.integration

CFG = LabConfig(name="id", subnet="198.18.234.0/24", prometheus_port=19234, rate=20, weights=(50, 50))
PARTS = ("client", "lb", "stable", "canary")


@pytest.fixture(scope="module")
def lab():
    need(cgroups.mountpoint() is not None, "no cgroup v2 hierarchy mounted")
    with running_lab(CFG) as layout:
        yield layout


def test_no_flow_between_the_labs_parts_is_unowned_on_either_side(lab):
    ep = manager.endpoints(CFG)
    assert ep is not None
    settings = manager.wire_settings(Settings(), ep)
    by_addr = {lab.addr(p): p for p in PARTS}

    async def run():
        c = FlowsCollector(settings.ifaces, interval=1.0)
        await c.start()
        # A connection that began before the TCP tracepoints were attached and ended
        # before the first lookup has no client end left to find (its socket and its
        # connect are both gone): only connections first seen after the first tick count.
        await c.collect()
        since = time.time()
        try:
            end, last = time.monotonic() + 120, None
            while time.monotonic() < end:
                await asyncio.sleep(1.0)
                data = await c.collect()
                ours = [
                    f
                    for f in data.flows
                    if f.src in by_addr and f.dst in by_addr and f.proto == "tcp" and f.first_seen > since
                ]
                seen = {frozenset((by_addr[f.src], by_addr[f.dst])) for f in ours}
                # client<->lb and lb<->both services, every one owned at both ends
                if len(seen) >= 3 and all(f.pid and f.peer_pid for f in ours):
                    return data, ours
                last = [(f.src, f.sport, f.dst, f.dport, f.pid, f.peer_pid) for f in ours if not f.peer_pid]
            raise AssertionError(f"unowned lab flows after 120 s: {last}")
        finally:
            await c.close()

    data, ours = asyncio.run(run())
    for f in ours:
        ends = {by_addr[f.src], by_addr[f.dst]}
        for pid in (f.pid, f.peer_pid):
            who = data.identity(pid)
            assert who is not None, f"no identity for pid {pid}"
            part = next(p for p in ends if who.netns == lab.netns(p))  # each end in its part's namespace
            assert who.unit == lab.scope(part) and who.cgroup.endswith("/" + lab.scope(part))
            if part in ("stable", "canary"):
                assert (who.service, who.track) == (CFG.service_name, part)
