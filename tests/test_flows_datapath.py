"""The flows datapath on real interfaces: namespaces and a veth link made here.

How bytes are counted (and so what the expected numbers below are): TC sees link-layer
frames, so a flow's bytes are, per wire packet, the 14-byte Ethernet header + the IP
header (20 for IPv4 without options, 40 for IPv6) + the L4 header + payload; no FCS,
no preamble. A GSO/GRO super-packet counts as the wire packets it stands for, each
with its headers. TCP timestamps and SACK are switched off in both namespaces so every
TCP header is 20 bytes (a SACK block on a duplicate ACK after a reordered or dropped
segment on a busy machine would add 12), except SYN and SYN-ACK which carry 8 bytes of
options (MSS, window scale).

The flows collector runs in a child process inside namespace A (`--agent` mode of this
file) so that it attaches to A's veth; the test drives it over stdin/stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import need, need_root
from netns import PYTHON, veth_pair

pytestmark = [pytest.mark.root, pytest.mark.integration]

ETH, IP4, IP6, TCP, UDP, SYN_OPTS = 14, 20, 40, 20, 8, 8
ROOT = Path(__file__).resolve().parent.parent
EBPFTOP = str(ROOT / ".venv" / "bin" / "ebpftop")


# --- the agent: the collector inside namespace A --------------------------------------


def agent_main(argv: list[str]) -> int:
    import argparse
    import asyncio

    from ebpftop.collectors.flows.collector import FlowsCollector
    from ebpftop.core.codec import to_jsonable

    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", action="append", default=[])
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--no-tcp", action="store_true")
    ap.add_argument("--max-flows", type=int, default=131072)
    ap.add_argument("--ring-pages", type=int, default=None)
    a = ap.parse_args(argv)
    # Die by each signal as a process of its own would: a runner started under nohup
    # (SIGHUP) or as a background job (SIGINT) hands its children those signals ignored.
    for signo in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signo, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def say(obj) -> None:
        print(json.dumps(obj), flush=True)

    async def main() -> int:
        c = FlowsCollector(
            a.iface, mode=a.mode, tcp_events=not a.no_tcp, max_flows=a.max_flows, tcp_ring_pages=a.ring_pages
        )
        try:
            await c.start()
        except Exception as exc:
            say({"error": str(getattr(exc, "message", exc))})
            return 1
        say(
            {
                "ready": True,
                "prog_ids": c.dp.prog_ids(),
                "notices": c.notices,
                "mode": [att.mode for att in c.dp.attachments.values()],
            }
        )
        # read commands through the loop, so a signal's cancellation reaches us
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while (await reader.readline()).strip() == b"sample":
                try:
                    data = c.sample()
                    say({"data": to_jsonable(data), "degraded": c.degraded_reason(data)})
                except Exception as exc:
                    say({"error": str(exc)})
        finally:
            await c.close()
        say({"closed": True})
        return 0

    return asyncio.run(main())


class Agent:
    def __init__(self, ns, *args: str) -> None:
        self.proc = ns.popen(PYTHON, __file__, "--agent", *args, stdin=subprocess.PIPE, bpf=True)
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"agent died: {self.proc.stderr.read()}")
        return json.loads(line)

    def sample(self) -> dict:
        self.proc.stdin.write("sample\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        self.proc.stdin.close()
        out = self._read()
        self.proc.wait(timeout=30)
        return out


def flow(data: dict, proto: str, direction: str, src: str, dst: str, sport=None, dport=None) -> dict:
    """One way of a connection as one interface hook saw it: the connection's record
    with the figures of its path `direction`, packets going src -> dst."""
    hits = []
    for f in data["flows"]:
        if f["proto"] != proto:
            continue
        ends = (f["src"], f["sport"], f["dst"], f["dport"])
        for forward, (s, sp, d, dp) in ((True, ends), (False, (ends[2], ends[3], ends[0], ends[1]))):
            if (
                s != src
                or d != dst
                or (sport is not None and sp != sport)
                or (dport is not None and dp != dport)
            ):
                continue
            for p in f["paths"]:
                if p["forward"] == forward and p["direction"] == direction:
                    hits.append({**f, **p, "src": s, "sport": sp, "dst": d, "dport": dp})
    assert len(hits) == 1, f"expected one {proto} {direction} {src}->{dst} flow, got {hits}"
    return hits[0]


def within(actual: int, expected: int, tolerance: float = 0.01) -> bool:
    return abs(actual - expected) <= tolerance * expected


@pytest.fixture
def net():
    need_root()
    need(Path("/sys/fs/bpf").is_dir(), "bpffs")
    with veth_pair() as pair:
        for ns in (pair.a, pair.b):
            ns.run("sysctl", "-qw", "net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0")
        yield pair


# --- traffic programs (run inside a namespace) ----------------------------------------

TCP_INFO = r"""
import socket, struct
def tcp_info(s):
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    state = raw[0]
    total_retrans, = struct.unpack_from("I", raw, 100)
    segs_out, segs_in = struct.unpack_from("II", raw, 136)
    bytes_sent, = struct.unpack_from("Q", raw, 200)  # payload sent, retransmissions included
    return {"state": state, "segs_out": segs_out, "segs_in": segs_in, "total_retrans": total_retrans,
            "bytes_sent": bytes_sent}
def settle(s):
    # wait until the connection is fully closed, so segs_out counts every packet sent
    import time
    for _ in range(400):
        if tcp_info(s)["state"] in (7,):  # TCP_CLOSE
            break
        time.sleep(0.01)
    return tcp_info(s)
"""

TCP_SERVER = (
    TCP_INFO
    + r"""
import json, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(fam); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(); print("listening", flush=True)
c, peer = srv.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
c.shutdown(socket.SHUT_WR)
info = settle(c); info["received"] = n; info["peer_port"] = peer[1]
print(json.dumps(info), flush=True)
"""
)

TCP_CLIENT = (
    TCP_INFO
    + r"""
import json, sys, os
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.socket(fam); c.connect((sys.argv[1], int(sys.argv[2])))
total = int(sys.argv[3]); chunk = b"x" * 65536; sent = 0
while sent < total:
    sent += c.send(chunk[: min(len(chunk), total - sent)])
c.shutdown(socket.SHUT_WR)
while c.recv(4096): pass
info = settle(c); info["sent"] = sent; info["port"] = c.getsockname()[1]; info["pid"] = os.getpid()
print(json.dumps(info), flush=True)
"""
)

UDP_SEND = r"""
import socket, sys, json, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.connect((sys.argv[1], int(sys.argv[2])))
count, size = int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    s.send(b"u" * size)
    if i % 200 == 199: time.sleep(0.005)  # stay below the receiver's buffer
print(json.dumps({"port": s.getsockname()[1], "sent": count}), flush=True)
"""

UDP_RECV = r"""
import socket, sys, json
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(3); print("listening", flush=True)
n = 0
try:
    while n < int(sys.argv[3]):
        s.recv(65536); n += 1
except socket.timeout:
    pass
print(json.dumps({"received": n}), flush=True)
"""


def tcp_transfer(net, nbytes: int, *, server_ns=None, client_ns=None, server_ip=None, port=5201):
    server_ns = server_ns or net.a
    client_ns = client_ns or net.b
    server_ip = server_ip or net.a_ip4
    srv = server_ns.python(TCP_SERVER, server_ip, str(port))
    assert srv.stdout.readline().strip() == "listening"
    cli = client_ns.python(TCP_CLIENT, server_ip, str(port), str(nbytes))
    c_out, c_err = cli.communicate(timeout=120)
    s_out, s_err = srv.communicate(timeout=120)
    assert cli.returncode == 0 and srv.returncode == 0, c_err + s_err
    return json.loads(c_out), json.loads(s_out.splitlines()[-1]), cli.pid


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_transfer_bytes_and_packets_match_ground_truth(net, family):
    agent = Agent(net.a, "--iface", net.a_if)
    assert agent.hello.get("ready"), agent.hello
    assert agent.hello["mode"] == [
        "tcx",
    ]
    a_ip, b_ip = (net.a_ip4, net.b_ip4) if family == 4 else (net.a_ip6, net.b_ip6)
    ip = IP4 if family == 4 else IP6
    nbytes = 8 * 1024 * 1024 + 12345
    started = time.time()
    client, server, _ = tcp_transfer(net, nbytes, server_ip=a_ip)
    ended = time.time()
    assert client["sent"] == server["received"] == nbytes
    data = agent.sample()["data"]
    agent.close()
    assert data["tcp_events_error"] is None and data["lost_events"] == 0

    # B -> A: everything the client sent (tcp_info segs_out counts wire segments,
    # SYN, pure ACKs, FIN and retransmissions included): payload (bytes_sent: the
    # application's bytes plus any retransmitted) + headers per packet + SYN options.
    inbound = flow(data, "tcp", "ingress", b_ip, a_ip, client["port"], 5201)
    assert inbound["iface"] == net.a_if
    assert within(inbound["packets"], client["segs_out"]), (inbound["packets"], client)
    assert client["bytes_sent"] >= nbytes
    expected_in = client["bytes_sent"] + client["segs_out"] * (ETH + ip + TCP) + SYN_OPTS
    assert within(inbound["bytes"], expected_in), (inbound, client)
    # A -> B: the server's acknowledgements, SYN-ACK and FIN: headers only. The
    # SYN-ACK goes out from the listening socket on the connection's behalf, so the
    # accepted socket's segs_out does not count it: + 1.
    outbound = flow(data, "tcp", "egress", a_ip, b_ip, 5201, client["port"])
    assert within(outbound["packets"], server["segs_out"] + 1), (outbound["packets"], server)
    expected_out = (server["segs_out"] + 1) * (ETH + ip + TCP) + SYN_OPTS
    assert within(outbound["bytes"], expected_out), (outbound["bytes"], expected_out)
    # the map keeps jiffies; the collector's wall-clock times land inside the transfer
    # (a jiffy and the calibration's rounding either side: 50 ms)
    for f in (inbound, outbound):
        assert started - 0.05 <= f["first_seen"] <= f["last_seen"] <= ended + 0.05, (f, started, ended)


@pytest.mark.parametrize("family", [4, 6])
def test_udp_datagrams_match_ground_truth(net, family):
    agent = Agent(net.a, "--iface", net.a_if, "--no-tcp")
    a_ip, b_ip = (net.a_ip4, net.b_ip4) if family == 4 else (net.a_ip6, net.b_ip6)
    ip = IP4 if family == 4 else IP6
    count, size = 3000, 1000
    recv = net.a.python(UDP_RECV, a_ip, "5300", str(count))
    assert recv.stdout.readline().strip() == "listening"
    send = net.b.python(UDP_SEND, a_ip, "5300", str(count), str(size))
    sent = json.loads(send.communicate(timeout=60)[0])
    received = json.loads(recv.communicate(timeout=60)[0])["received"]
    data = agent.sample()["data"]
    agent.close()
    f = flow(data, "udp", "ingress", b_ip, a_ip, sent["port"], 5300)
    # Every datagram that crossed the link was seen at A's ingress, dropped by the
    # receiving socket or not, so the sender's count is the truth.
    assert within(f["packets"], count), (f["packets"], count, received)
    assert within(f["bytes"], count * (ETH + ip + UDP + size)), f["bytes"]


def test_rates_need_two_samples_then_follow_the_traffic(net):
    agent = Agent(net.a, "--iface", net.a_if, "--no-tcp")
    first = agent.sample()["data"]
    assert first["total_bps"] is None  # one sample cannot make a rate
    count, size = 2000, 500
    recv = net.a.python(UDP_RECV, net.a_ip4, "5301", str(count))
    recv.stdout.readline()
    send = net.b.python(UDP_SEND, net.a_ip4, "5301", str(count), str(size))
    sent = json.loads(send.communicate(timeout=60)[0])
    recv.communicate(timeout=60)
    t0 = time.monotonic()
    second = agent.sample()["data"]
    f = flow(second, "udp", "ingress", net.b_ip4, net.a_ip4, sent["port"], 5301)
    # the flow was born between the samples, so all its bytes moved in that interval:
    # rate * interval == bytes (the interval itself is not known here, so check the
    # ratio bytes/bps == packets/pps, which holds only if both use the same interval)
    assert f["bps"] > 0 and f["pps"] > 0
    assert abs(f["bytes"] / f["bps"] - f["packets"] / f["pps"]) < 1e-6
    third = agent.sample()["data"]
    agent.close()
    idle = flow(third, "udp", "ingress", net.b_ip4, net.a_ip4, sent["port"], 5301)
    assert idle["bps"] == 0 and idle["pps"] == 0 and idle["bytes"] == f["bytes"]
    assert time.monotonic() >= t0  # (keeps linters quiet about t0; no timing asserted)


SLOW_ACCEPT_SERVER = r"""
import socket, sys, time
def listen_drops():  # this namespace's count of SYNs a full accept queue dropped
    with open("/proc/net/netstat") as f:
        names, values = [line.split() for line in f if line.startswith("TcpExt:")][:2]
    return int(values[names.index("ListenDrops")])
before = listen_drops()
srv = socket.socket(); srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(0)
print("listening", flush=True)
sys.stdin.readline()       # the blocker's connection now fills the accept queue
# the measured client's first SYN arrives and is dropped: wait for it however late the
# client starts (a fixed sleep lost that race on a loaded machine), then make room
deadline = time.monotonic() + 60
while listen_drops() == before and time.monotonic() < deadline:
    time.sleep(0.01)
conns = [srv.accept()[0] for _ in range(2)]
for c in conns:
    while c.recv(65536): pass
    c.close()
"""


def test_connect_latency_and_process_of_a_new_connection(net):
    # No netem in this kernel. Instead a full accept queue (listen backlog 0, one
    # connection waiting) makes the kernel drop the measured client's first SYN; the
    # client retransmits it after the initial RTO of 1 s, so the handshake really
    # takes >= 1 s, and the reported latency must say so.
    agent = Agent(net.a, "--iface", net.a_if)
    srv = net.b.python(SLOW_ACCEPT_SERVER, net.b_ip4, "5202", stdin=subprocess.PIPE)
    assert srv.stdout.readline().strip() == "listening"
    blocker = net.a.python(
        "import socket,sys,time; s=socket.create_connection((sys.argv[1], 5202)); print('up', flush=True); "
        "sys.stdin.readline(); s.close()",
        net.b_ip4,
        stdin=subprocess.PIPE,
    )
    assert blocker.stdout.readline().strip() == "up"
    srv.stdin.write("go\n")
    srv.stdin.flush()
    cli = net.a.python(TCP_CLIENT, net.b_ip4, "5202", "100000")
    blocker.stdin.write("done\n")
    blocker.stdin.flush()
    client = json.loads(cli.communicate(timeout=60)[0])
    srv.communicate(timeout=60)
    data = agent.sample()["data"]
    agent.close()
    out = flow(data, "tcp", "egress", net.a_ip4, net.b_ip4, client["port"], 5202)
    assert out["connect_latency_ms"] is not None and out["connect_latency_ms"] >= 1000, (
        out,
        data["recent_events"],
        client,
    )
    assert out["pid"] == cli.pid == client["pid"]
    assert out["comm"] and out["comm"].startswith("python")
    # the dropped SYN went out again: a retransmit, then the connect, then the close
    kinds = [e["kind"] for e in out["events"]]
    assert kinds[:2] == ["retransmit", "connect"] and "close" in kinds, kinds
    assert out["retransmits"] >= 1
    close = next(e for e in out["events"] if e["kind"] == "close")
    assert close["ms"] is not None and close["ms"] > 0  # duration since established
    # the blocker connected without trouble: its latency is known and far below 1 s
    other = [f for f in data["flows"] if f["dport"] == 5202 and f["sport"] != client["port"]]
    assert (
        len(other) == 1
        and other[0]["connect_latency_ms"] is not None
        and other[0]["connect_latency_ms"] < 1000
    )
    assert data["lost_events"] == 0 and data["events_total"] >= 4


def test_retransmits_counted_under_induced_loss(net):
    # No netem in this kernel: tests/lossy.py drops every 16th data skb for port 5201
    # at B's ingress, at most 4 (spaced drops recover by fast retransmit in
    # milliseconds; an overflowing queue could stall TCP in RTO backoff).
    lossy = net.b.popen(
        PYTHON,
        str(Path(__file__).parent / "lossy.py"),
        net.b_if,
        "5201",
        "16",
        "4",
        stdin=subprocess.PIPE,
        bpf=True,
    )
    assert lossy.stdout.readline().strip() == "ready", lossy.stderr.read()
    agent = Agent(net.a, "--iface", net.a_if)
    client, _, _ = tcp_transfer(net, 4 * 1024 * 1024, server_ns=net.b, client_ns=net.a, server_ip=net.b_ip4)
    drops = json.loads(lossy.communicate("", timeout=30)[0].splitlines()[-1])
    assert drops["dropped"] >= 1, drops  # the loss really happened
    assert client["total_retrans"] > 0, client
    data = agent.sample()["data"]
    agent.close()
    out = flow(data, "tcp", "egress", net.a_ip4, net.b_ip4, client["port"], 5201)
    # the tracepoint fires once per retransmitted skb, which may hold several segments
    assert 1 <= out["retransmits"] <= client["total_retrans"], (out["retransmits"], client)
    assert "retransmit" in [e["kind"] for e in out["events"]]  # and the events say so too


HOLDING_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.bind((sys.argv[1], 5203)); srv.listen(); print("listening", flush=True)
c, _ = srv.accept(); c.recv(65536); print("got", flush=True)
sys.stdin.readline()
"""


def test_accepting_side_is_attributed_from_the_socket_table_with_its_service(net):
    # The server's socket is accepted in softirq context (no pid there): its owner
    # comes from the socket table, its service from OTEL_SERVICE_NAME.
    agent = Agent(net.a, "--iface", net.a_if)
    env = {**os.environ, "OTEL_SERVICE_NAME": "checkout-test"}
    srv = net.a.python(HOLDING_SERVER, net.a_ip4, stdin=subprocess.PIPE, env=env)
    assert srv.stdout.readline().strip() == "listening"
    cli = net.b.python(
        "import socket,sys; s=socket.create_connection((sys.argv[1], 5203)); s.sendall(b'hi'); "
        "print(s.getsockname()[1], flush=True); sys.stdin.readline()",
        net.a_ip4,
        stdin=subprocess.PIPE,
    )
    port = int(cli.stdout.readline())
    assert srv.stdout.readline().strip() == "got"
    data = agent.sample()["data"]
    srv.stdin.close()
    cli.stdin.close()
    agent.close()
    inbound = flow(data, "tcp", "ingress", net.b_ip4, net.a_ip4, port, 5203)
    assert inbound["pid"] == srv.pid
    assert inbound["service"] == "checkout-test"
    assert inbound["comm"].startswith("python")
    # one row per connection: its connect latency is the connecting end's (B's socket,
    # seen by the same tracepoints), the owner still this side's
    assert inbound["connect_latency_ms"] is not None and inbound["connect_latency_ms"] < 1000


def test_a_full_map_counts_its_evictions(net):
    agent = Agent(net.a, "--iface", net.a_if, "--no-tcp", "--max-flows", "64")
    count = 300  # distinct UDP flows, far more than the map holds
    send = net.b.python(
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for p in range(20000, 20000 + int(sys.argv[2])): s.sendto(b'x', (sys.argv[1], p))\n",
        net.a_ip4,
        str(count),
    )
    send.communicate(timeout=30)
    data = agent.sample()["data"]
    agent.close()
    assert data["max_flows"] == 64
    assert data["flows_tracked"] <= 64
    # each of the 300 flows was inserted once (plus a few ICMP replies); all but the
    # live ones were pushed out, and that is said, not hidden
    assert data["evictions"] >= count - 64
    assert data["update_failures"] == 0


CHURN = r"""
import socket, sys
srv = socket.socket(); srv.bind((sys.argv[1], 0)); srv.listen(512)
port = srv.getsockname()[1]
for _ in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], port)); s, _ = srv.accept(); c.close(); s.close()
"""


def test_lost_tcp_events_are_counted_not_silent(net):
    # A one-page ring buffer (about 50 events) and 300 connections between two polls:
    # most events cannot be queued. Each connection makes at least 4 events (connect,
    # accept, two closes); every one must be either delivered or counted as lost.
    agent = Agent(net.a, "--iface", "lo", "--ring-pages", "1")
    agent.sample()
    n = 300
    churn = net.a.python(CHURN, "127.0.0.1", str(n))
    churn.communicate(timeout=120)
    reply = agent.sample()
    agent.close()
    data = reply["data"]
    assert data["lost_events"] > 0
    assert data["events_total"] + data["lost_events"] >= 4 * n
    assert "TCP events lost" in reply["degraded"]


def _tcx_links_of(prog_ids):
    from ebpftop.collectors.flows import tcx

    return [link for link in tcx.tcx_links("ebpftop_fl") if link.prog_id in prog_ids]


def _wait_gone(check, what: str) -> None:
    # the kernel frees programs after an RCU grace period: wait for it, with a bound
    deadline = time.monotonic() + 20
    while check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still present after SIGKILL: {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_death_by_signal_leaves_no_tcx_attachment(net, sig):
    from ebpftop.collectors.flows import tcx

    agent = Agent(net.a, "--iface", net.a_if)
    ids = set(agent.hello["prog_ids"])
    assert len(_tcx_links_of(ids)) == 2  # ingress and egress, held by the agent
    agent.proc.send_signal(sig)
    agent.proc.wait(timeout=10)
    _wait_gone(lambda: _tcx_links_of(ids), "tcx links")
    _wait_gone(lambda: any(tcx.prog_exists(i) for i in ids), "ebpftop programs")


def _tc_filters(ns, dev) -> str:
    return (
        ns.run("tc", "filter", "show", "dev", dev, "ingress").stdout
        + ns.run("tc", "filter", "show", "dev", dev, "egress").stdout
    )


def test_sigkill_with_netlink_tc_next_start_removes_leftovers_and_says_so(net):
    agent = Agent(net.a, "--iface", net.a_if, "--mode", "tc", "--no-tcp")
    assert agent.hello["mode"] == ["tc"]
    assert _tc_filters(net.a, net.a_if).count("name ebpftop_fl") == 2
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)
    assert _tc_filters(net.a, net.a_if).count("name ebpftop_fl") == 2  # netlink filters outlive it

    again = Agent(net.a, "--iface", net.a_if, "--mode", "tc", "--no-tcp")
    notices = again.hello["notices"]
    assert len([n for n in notices if "left by an ebpftop that is no longer running" in n]) == 2, notices
    assert all(net.a_if in n for n in notices)
    assert _tc_filters(net.a, net.a_if).count("name ebpftop_fl") == 2  # only the new ones
    again.close()
    assert "name ebpftop_fl" not in _tc_filters(net.a, net.a_if)
    assert "clsact" not in net.a.run("tc", "qdisc", "show", "dev", net.a_if).stdout


def test_cleanup_verb_removes_leftover_filters_and_lists_live_links(net):
    live = Agent(net.a, "--iface", "lo", "--no-tcp")  # tcx, held by a running process
    # (started first: a starting ebpftop removes leftovers itself, see the test above)
    agent = Agent(net.a, "--iface", net.a_if, "--mode", "tc", "--no-tcp")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)
    dry = net.a.run(EBPFTOP, "cleanup", "--dry-run", bpf=True)
    assert (
        dry.stdout.count("would remove") == 2 and _tc_filters(net.a, net.a_if).count("name ebpftop_fl") == 2
    )
    proc = net.a.run(EBPFTOP, "cleanup", check=False, bpf=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    removed = [ln for ln in proc.stdout.splitlines() if ln.startswith("removed")]
    assert len(removed) == 2 and all(net.a_if in ln for ln in removed)
    kept = [ln for ln in proc.stdout.splitlines() if ln.startswith("kept") and f"pid {live.proc.pid}" in ln]
    assert len(kept) == 2  # the live agent's two links: listed with their owner, left alone
    assert "name ebpftop_fl" not in _tc_filters(net.a, net.a_if)
    live.close()


def test_interface_that_disappears_is_reported_and_the_rest_carries_on(net):
    agent = Agent(net.a, "--iface", net.a_if, "--iface", "lo", "--no-tcp")
    assert sorted(agent.hello["mode"]) == ["tcx", "tcx"]
    net.a.run("ip", "link", "del", net.a_if)
    reply = agent.sample()
    agent.close()
    states = {i["name"]: i for i in reply["data"]["ifaces"]}
    assert states[net.a_if]["error"] == "interface disappeared" and states[net.a_if]["mode"] is None
    assert states["lo"]["mode"] == "tcx" and states["lo"]["error"] is None
    assert f"{net.a_if}: interface disappeared" in reply["degraded"]


def test_unknown_interface_fails_start_with_its_name(net):
    agent = Agent(net.a, "--iface", "nosuch0", "--no-tcp")
    assert "nosuch0" in agent.hello["error"] and "could not attach" in agent.hello["error"]
    agent.proc.wait(timeout=30)


def test_snapshot_json_carries_flows_and_tcp_counters(net):
    proc = net.a.run(
        EBPFTOP,
        "--iface",
        net.a_if,
        "snapshot",
        "--json",
        "--source",
        "flows",
        "--duration",
        "1",
        check=False,
        timeout=120,
        bpf=True,
    )
    doc = json.loads(proc.stdout)
    flows = doc["sources"]["flows"]
    assert flows["health"]["state"] == "ok", flows["health"]
    d = flows["data"]
    for key in (
        "flows",
        "flows_tracked",
        "evictions",
        "update_failures",
        "lost_events",
        "events_total",
        "ifaces",
    ):
        assert key in d
    assert d["lost_events"] == 0 and isinstance(d["events_total"], int)
    assert [i["name"] for i in d["ifaces"]] == [net.a_if]
    assert proc.returncode == 0, proc.stderr


if __name__ == "__main__" and sys.argv[1:2] == ["--agent"]:
    sys.exit(agent_main(sys.argv[2:]))
