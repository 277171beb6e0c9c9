"""One connection, one row, on real interfaces: a bridge in a middle namespace joins a
client and a server namespace (as the lab's bridge joins its parts), the flows
collector watches both bridge ports, so every packet of a connection crosses two
watched hooks. The connection must be one record listing both interfaces, its
packets and bytes counted once; many short connections must fold into one row.

The collector runs in the middle namespace through test_flows_datapath's agent.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import need, need_root
from netns import Netns, netns
from test_flows_datapath import ETH, IP4, SYN_OPTS, TCP, TCP_CLIENT, TCP_SERVER, Agent, within

from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.flows.view import FlowFold, fold_ended
from ebpftop.core.codec import from_jsonable

pytestmark = [pytest.mark.root, pytest.mark.integration]


@dataclass
class Bridged:
    client: Netns
    server: Netns
    middle: Netns
    client_ip: str
    server_ip: str
    ports: tuple[str, str]  # the bridge ports in the middle namespace: client's, server's


def _ip(*argv: str) -> None:
    proc = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def bridged() -> Iterator[Bridged]:
    net4 = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}"
    with netns("ebtc") as client, netns("ebtc") as server, netns("ebtc") as middle:
        _ip("-n", middle.name, "link", "add", "br0", "type", "bridge")
        for ns, port, ip in ((client, "pc", f"{net4}.2"), (server, "ps", f"{net4}.3")):
            _ip(
                "-n",
                middle.name,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name,
            )
            _ip("-n", middle.name, "link", "set", port, "master", "br0", "up")
            ns.run("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
            # every TCP header 20 bytes (see test_flows_datapath's docstring)
            ns.run("sysctl", "-qw", "net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0")
        _ip("-n", middle.name, "link", "set", "br0", "up")
        yield Bridged(client, server, middle, f"{net4}.2", f"{net4}.3", ("pc", "ps"))


@pytest.fixture
def net():
    need_root()
    need(Path("/sys/fs/bpf").is_dir(), "bpffs")
    with bridged() as b:
        yield b


def records(data: dict, port: int) -> list[dict]:
    return [f for f in data["flows"] if f["proto"] == "tcp" and port in (f["sport"], f["dport"])]


def test_one_connection_through_a_bridge_is_one_row_counted_once(net):
    agent = Agent(net.middle, "--iface", net.ports[0], "--iface", net.ports[1])
    assert agent.hello.get("ready"), agent.hello
    nbytes = 2 * 1024 * 1024 + 777
    srv = net.server.python(TCP_SERVER, net.server_ip, "5401")
    assert srv.stdout.readline().strip() == "listening"
    cli = net.client.python(TCP_CLIENT, net.server_ip, "5401", str(nbytes))
    client = json.loads(cli.communicate(timeout=120)[0])
    server = json.loads(srv.communicate(timeout=120)[0].splitlines()[-1])
    data = agent.sample()["data"]
    agent.close()

    rows = records(data, 5401)
    assert len(rows) == 1, rows  # one connection, one row (the map held an entry per hook and way)
    f = rows[0]
    # the client spoke first (its SYN): it is the source
    assert (f["src"], f["sport"], f["dst"], f["dport"]) == (
        net.client_ip,
        client["port"],
        net.server_ip,
        5401,
    )
    hooks = {(p["iface"], p["direction"], p["forward"]) for p in f["paths"]}
    assert hooks == {
        ("pc", "ingress", True),  # client -> server enters the bridge from the client
        ("ps", "egress", True),  # and leaves it towards the server
        ("ps", "ingress", False),  # the server's answers, the other way
        ("pc", "egress", False),
    }, f["paths"]
    # Ground truth per way (as in test_flows_datapath): each hook saw every packet of its
    # way; the connection counts each packet once, not once per hook.
    fwd_packets = client["segs_out"]
    back_packets = server["segs_out"] + 1  # + the SYN-ACK, sent by the listener
    fwd_bytes = client["bytes_sent"] + fwd_packets * (ETH + IP4 + TCP) + SYN_OPTS
    back_bytes = back_packets * (ETH + IP4 + TCP) + SYN_OPTS
    for p in f["paths"]:
        want = (fwd_packets, fwd_bytes) if p["forward"] else (back_packets, back_bytes)
        assert within(p["packets"], want[0]) and within(p["bytes"], want[1]), (p, want)
    assert within(f["packets"], fwd_packets + back_packets), (f["packets"], client, server)
    assert within(f["bytes"], fwd_bytes + back_bytes), (f["bytes"], fwd_bytes + back_bytes)
    assert sum(p["packets"] for p in f["paths"]) >= 2 * f["packets"] - 2  # two hooks each way
    # The totals count it once too: every connection the map holds is reported here.
    assert data["flows_tracked"] == len(data["flows"]) and data["map_entries"] >= 4
    assert data["total_packets"] == sum(r["packets"] for r in data["flows"])
    assert data["total_bytes"] == sum(r["bytes"] for r in data["flows"])
    assert data["total_bytes"] < fwd_bytes + back_bytes + 100_000  # not twice the connection


SHORT_CLIENT = r"""
import socket, sys
for _ in range(int(sys.argv[3])):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    c.sendall(b"GET / HTTP/1.0\r\n\r\n"); c.shutdown(socket.SHUT_WR)
    while c.recv(4096): pass
    c.close()
print("done", flush=True)
"""

SHORT_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(64); print("listening", flush=True)
for _ in range(int(sys.argv[3])):
    c, _ = srv.accept()
    while c.recv(4096): pass
    c.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"y" * 3000); c.close()
"""


def test_many_short_connections_fold_into_one_row(net):
    agent = Agent(net.middle, "--iface", net.ports[0], "--iface", net.ports[1])
    assert agent.hello.get("ready"), agent.hello
    n = 30
    srv = net.server.python(SHORT_SERVER, net.server_ip, "5402", str(n))
    assert srv.stdout.readline().strip() == "listening"
    cli = net.client.python(SHORT_CLIENT, net.server_ip, "5402", str(n))
    assert cli.communicate(timeout=120)[0].strip() == "done"
    srv.communicate(timeout=120)
    reply = agent.sample()
    agent.close()
    data = from_jsonable(FlowsData, reply["data"])
    conns = [f for f in data.flows if f.proto == "tcp" and f.dport == 5402]
    # each connection is one record, seen on both bridge ports, closed (its TCP close seen)
    assert len(conns) == n, [(f.sport, f.dport) for f in conns]
    assert all(f.closed and {p.iface for p in f.paths} == {"pc", "ps"} for f in conns)
    assert all(f.pid == cli.pid for f in conns), {f.pid for f in conns}
    # the default view: one row for all of them, with their count and their sums
    rows = [r for r in fold_ended(data.flows, now=max(f.last_seen for f in conns)) if r.dport == 5402]
    assert len(rows) == 1 and isinstance(rows[0], FlowFold), rows
    fold = rows[0]
    assert fold.connections == n and (fold.src, fold.dst) == (net.client_ip, net.server_ip)
    assert fold.bytes == sum(f.bytes for f in conns) and fold.packets == sum(f.packets for f in conns)
    # every request's answer (3000 bytes and the status line) went back once, not once per hook
    answer = len(b"HTTP/1.0 200 OK\r\n\r\n") + 3000
    assert n * answer < fold.bytes < 2 * n * answer
