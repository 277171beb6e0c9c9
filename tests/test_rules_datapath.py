"""The rules datapath on a veth link between two namespaces made here.

Every change runs through the real CLI (`ebpftop rules ...`) in a child process that
has entered namespace A's network namespace only (nsenter --net), so it attaches to A's
veth and pins under a bpffs directory of its own on the host's /sys/fs/bpf; the child
exits after each change, so everything checked here is enforced with no ebpftop
running. Traffic comes from namespace B. Bytes are counted at A's ingress, where TC
sees the Ethernet header: a UDP datagram of n payload bytes is 14 + 20 + 8 + n bytes.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import need, need_root
from netns import PYTHON, veth_pair

pytestmark = [pytest.mark.root, pytest.mark.integration]
ETH, IP4, UDP = 14, 20, 8

SEND_UDP = """
import socket, sys
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(n):
    s.sendto(b'x' * size, (host, port))
"""

UDP_SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('ready', flush=True)
n = 0
s.settimeout(0.2)
for line in sys.stdin:  # each line asks: how many so far (after draining)
    while True:
        try:
            s.recv(65536); n += 1
        except socket.timeout:
            break
    print(n, flush=True)
"""

TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16)
print('ready', flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

TCP_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print('connected')
except OSError as e:
    print('failed', type(e).__name__)
"""


class Env:
    def __init__(self, net, tmp: Path) -> None:
        self.net = net
        self.pin_dir = f"/sys/fs/bpf/ebpftop-test-{secrets.token_hex(4)}/rules"
        self.state_dir = str(tmp / "state")
        cfg = tmp / "config.toml"
        cfg.write_text("")
        self.env = dict(
            os.environ,
            EBPFTOP_CONFIG=str(cfg),
            EBPFTOP_RULES_PIN_DIR=self.pin_dir,
            EBPFTOP_RULES_STATE_DIR=self.state_dir,
            EBPFTOP_AUDIT_LOG=str(tmp / "audit.jsonl"),
            EBPFTOP_AUDIT_KEY=str(tmp / "audit.key"),
        )
        self.env.pop("CI", None)

    def cmd(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.net.a.name}", PYTHON, "-m", "ebpftop.cli.main", *args]

    def cli(
        self, *args: str, ok: bool | None = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            self.cmd(*args), env=self.env, capture_output=True, text=True, timeout=180, input=input
        )
        if ok is True:
            assert p.returncode == 0, f"{args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def rules(self) -> dict:
        return json.loads(self.cli("rules", "list", "--json").stdout)

    def counters(self) -> dict[str, tuple[int, int]]:
        """comment -> (packets, bytes)"""
        return {r["comment"]: (r["packets"], r["bytes"]) for r in self.rules()["rules"]}

    def ping(self, count: int = 3, ip: str | None = None) -> bool:
        p = self.net.b.run(
            "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip or self.net.a_ip4, check=False
        )
        return p.returncode == 0

    def send_udp(self, port: int, n: int, size: int) -> None:
        self.net.b.run(PYTHON, "-c", SEND_UDP, self.net.a_ip4, str(port), str(n), str(size))

    def connect(self, port: int, timeout: float = 1.5) -> str:
        return self.net.b.run(
            PYTHON, "-c", TCP_CONNECT, self.net.a_ip4, str(port), str(timeout)
        ).stdout.strip()

    def remove(self) -> None:
        from ebpftop.collectors.rules.ruleset import RuleBook

        book = RuleBook(self.pin_dir, self.state_dir)
        book.dp.remove()
        book.state.remove()
        shutil.rmtree(os.path.dirname(self.pin_dir), ignore_errors=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need_root()
    with veth_pair("ebrl") as net:
        e = Env(net, tmp_path_factory.mktemp("rules"))
        try:
            yield e
        finally:
            e.remove()


@pytest.fixture
def rules(env):
    yield env
    env.cli("rules", "flush", "--yes", ok=None)


def _server(env, code: str, port: int):
    p = env.net.a.python(code, str(port), stdin=subprocess.PIPE)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_deny_drops_and_counts_exactly_and_delete_restores(rules):
    b = rules.net.b_ip4
    assert rules.ping(2)
    shown = rules.cli("rules", "add", "--yes", f'deny icmp from {b} in "ping"').stdout
    assert (
        f"It DROPS icmp packets from {b}/32 to any address arriving on every interface" in shown
    )  # confirmation text
    assert not rules.ping(3)  # enforced with no ebpftop running: the CLI has exited
    assert rules.counters()["ping"][0] == 3  # three echo requests, each dropped at A's ingress
    srv = _server(rules, TCP_SERVER, 8080)
    assert rules.connect(8080) == "connected"
    rules.cli("rules", "add", "--yes", 'deny tcp to any port 8080 in "web"')
    assert rules.connect(8080).startswith("failed")
    assert rules.counters()["web"][0] >= 1  # the SYN and its retransmits
    ids = {r["comment"]: r["id"] for r in rules.rules()["rules"]}
    rules.cli("rules", "del", "--yes", str(ids["web"]))
    assert rules.connect(8080) == "connected"
    assert not rules.ping(1)  # the other rule still holds, its counter kept
    assert rules.counters()["ping"][0] == 4
    rules.cli("rules", "del", "--yes", str(ids["ping"]))
    assert rules.ping(2)
    srv.kill()


def test_count_counts_exactly_and_passes(rules):
    sink = _server(rules, UDP_SINK, 9999)
    rules.cli("rules", "add", "--yes", 'count udp to any port 9999 in "c"')
    rules.send_udp(9999, 25, 100)
    sink.stdin.write("?\n")
    sink.stdin.flush()
    assert int(sink.stdout.readline()) == 25
    assert rules.counters()["c"] == (25, 25 * (ETH + IP4 + UDP + 100))
    sink.kill()


def test_counts_from_every_cpu_are_summed(rules):
    """Counters are kept per CPU ([cpu][set][position]); the reader sums them. veth hands a packet
    to the receiving side on the sender's CPU, so pinning the sender picks the CPU."""
    from ebpftop.collectors.rules import bpfsys
    from ebpftop.collectors.rules.compile import MAX_SLOTS
    from ebpftop.collectors.rules.ruleset import RuleBook

    cpus = sorted(os.sched_getaffinity(0))[:2]
    need(len(cpus) == 2, "needs two CPUs to put packets on two of them")
    sink = _server(rules, UDP_SINK, 9998)
    rules.cli("rules", "add", "--yes", 'count udp to any port 9998 in "percpu"')
    for cpu, n in zip(cpus, (5, 9), strict=True):
        rules.net.b.run(
            "taskset", "-c", str(cpu), PYTHON, "-c", SEND_UDP, rules.net.a_ip4, "9998", str(n), "20"
        )
    assert rules.counters()["percpu"] == (14, 14 * (ETH + IP4 + UDP + 20))
    book = RuleBook(rules.pin_dir, rules.state_dir)
    try:
        pos = next(i for i, r in enumerate(book.read().rules) if r.comment == "percpu")
        m = book.dp.map("counters")
        assert m.max_entries == bpfsys.possible_cpus() * MAX_SLOTS
        at = [book.dp.counter_index(c, book.dp.active(), pos) for c in cpus]
        per_cpu = [int.from_bytes(m.lookup(struct.pack("<I", i))[:8], "little") for i in at]
    finally:
        book.close()
    assert per_cpu == [5, 9]
    sink.kill()


CRASH_IN_CHANGE = """
import os, sys
from ebpftop.collectors.rules import datapath
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.ruleset import RuleBook
pin, state, where, text = sys.argv[1:5]
calls = {"fold": 0, "zero_counters": 0}
def dying(name):
    real = getattr(datapath.Datapath, name)
    def run(self, *a, **k):
        calls[name] += 1
        if calls[name] == 2:  # the second: after the switch (the first readies the shadow set)
            os._exit(9)
        return real(self, *a, **k)
    return run
setattr(datapath.Datapath, where, dying(where))
RuleBook(pin, state).add(parse_rule(text), "crasher")
"""


def test_counts_stay_exact_when_a_change_dies_after_its_switch(rules):
    """A change switches sets, then folds the old set's counters into base (by slot) and
    zeroes them. Dying right after the switch leaves them unfolded: the reader adds them
    and the next change folds them. Dying after the fold's write but before the zeroing:
    the recorded generation keeps them from being counted twice."""
    from ebpftop.collectors.rules.ruleset import RuleBook

    sink = _server(rules, UDP_SINK, 9997)
    rules.cli("rules", "add", "--yes", 'count udp to any port 9997 in "c"')
    rules.send_udp(9997, 10, 30)
    size = ETH + IP4 + UDP + 30
    assert rules.counters()["c"] == (10, 10 * size)
    for where, comment, more in (("fold", "x1", 5), ("zero_counters", "x2", 3)):
        p = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{rules.net.a.name}",
                PYTHON,
                "-c",
                CRASH_IN_CHANGE,
                rules.pin_dir,
                rules.state_dir,
                where,
                f'count tcp to any port 1 "{comment}"',
            ],
            env=rules.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 9, p.stderr
        listed = rules.counters()
        assert comment in listed  # the switch happened: the new set is enforced
        total = sum(n for n in (10, 5, 3)[: 1 + ("x1", "x2").index(comment)])
        assert listed["c"] == (total, total * size), where
        rules.send_udp(9997, more, 30)
        assert rules.counters()["c"] == (total + more, (total + more) * size), where
    rules.cli("rules", "add", "--yes", 'count tcp to any port 2 "x3"')
    assert rules.counters()["c"] == (18, 18 * size)
    book = RuleBook(rules.pin_dir, rules.state_dir)
    try:
        dp = book.dp
        inactive = 1 - dp.active()
        assert dp.read_base()[0] == dp.meta(inactive)[0]  # the old set is folded ...
        assert dp.position_counters(inactive, 256) == [(0, 0, 0)] * 256  # ... and zeroed
    finally:
        book.close()
    sink.stdin.write("?\n")
    sink.stdin.flush()
    assert int(sink.stdout.readline()) == 18  # count rules pass every packet
    sink.kill()


def test_ipv6_deny(rules):
    ip6 = rules.net.a_ip6
    assert rules.ping(1, ip6)
    rules.cli("rules", "add", "--yes", f'deny icmp from {rules.net.b_ip6} to {ip6} "v6"')
    assert not rules.ping(2, ip6)
    assert rules.counters()["v6"][0] == 2
    assert rules.ping(1)  # IPv4 untouched


def test_priority_first_match_wins(rules):
    sink = _server(rules, UDP_SINK, 9998)
    b = rules.net.b_ip4
    path = Path(rules.state_dir).parent / "prio.rules"
    path.write_text(f'allow udp from {b} to any port 9998 "allow"\ndeny udp to any port 9990-9999 "deny"\n')
    rules.cli("rules", "load", "--yes", str(path))
    rules.send_udp(9998, 10, 10)
    sink.stdin.write("?\n")
    sink.stdin.flush()
    assert int(sink.stdout.readline()) == 10
    assert rules.counters() == {"allow": (10, 10 * (ETH + IP4 + UDP + 10)), "deny": (0, 0)}
    # the same two rules, deny first: the deny wins now; counters follow their rules
    path.write_text(f'deny udp to any port 9990-9999 "deny"\nallow udp from {b} to any port 9998 "allow"\n')
    rules.cli("rules", "load", "--yes", str(path))
    rules.send_udp(9998, 7, 10)
    sink.stdin.write("?\n")
    sink.stdin.flush()
    assert int(sink.stdout.readline()) == 10  # nothing more arrived
    assert rules.counters() == {
        "deny": (7, 7 * (ETH + IP4 + UDP + 10)),
        "allow": (10, 10 * (ETH + IP4 + UDP + 10)),
    }
    sink.kill()


def test_rule_over_the_limit_is_refused_and_nothing_changes(rules):
    path = Path(rules.state_dir).parent / "full.rules"
    path.write_text("".join(f'count udp to any port {1000 + i} "r{i}"\n' for i in range(256)))
    rules.cli("rules", "load", "--yes", str(path))
    before = rules.rules()
    assert len(before["rules"]) == 256
    p = rules.cli("rules", "add", "--yes", "deny icmp", ok=False)
    assert p.returncode == 1
    assert "257 rules: the datapath holds at most 256; nothing was changed" in p.stderr
    after = rules.rules()
    assert after["generation"] == before["generation"]
    assert [r["text"] for r in after["rules"]] == [r["text"] for r in before["rules"]]
    assert rules.ping(1)  # the refused deny is not enforced
    p = rules.cli("rules", "del", "--yes", "9999", ok=False)
    assert p.returncode == 1 and "no rule with id 9999; nothing was changed" in p.stderr
    assert rules.rules()["generation"] == before["generation"]


def test_ttl_expires_in_the_kernel_with_no_ebpftop_running(rules):
    # One change, so the TTL does not run while a second CLI starts (a second or more on
    # a loaded machine), and room for the ping below to land before it ends.
    path = Path(rules.state_dir).parent / "ttl.rules"
    path.write_text(
        f'deny icmp from {rules.net.b_ip4} ttl 6s "ttl"\ncount icmp from {rules.net.b_ip4} "after"\n'
    )
    rules.cli("rules", "load", "--yes", str(path))
    assert not rules.ping(1)
    listed = rules.rules()["rules"][0]
    time.sleep(
        max(0.0, listed["expires"] - time.time()) + 0.5
    )  # waiting for the TTL itself, not timing anything
    assert rules.ping(2)  # no ebpftop process exists: the kernel stopped matching it
    listed = rules.rules()["rules"]
    assert listed[0]["expired"] and listed[0]["packets"] == 1  # shown as expired until the next change
    assert listed[1]["packets"] == 2  # the expired first match gives way to the next rule: both requests


def test_deny_survives_exit_and_cleanup_removes_it(rules):
    rules.cli("rules", "add", "--yes", f'deny icmp from {rules.net.b_ip4} "stay"')
    assert not rules.ping(1)
    assert os.path.exists(rules.pin_dir)
    out = rules.cli("cleanup").stdout
    assert f"1 rules under {rules.pin_dir}" in out, out
    assert f"tcx link   {rules.net.a_if} ingress" in out, out
    assert not os.path.exists(rules.pin_dir)
    assert not os.path.exists(rules.state_dir)
    assert rules.ping(2)
    assert rules.cli("rules", "list").stdout.strip() == "no rules enforced"


def test_kiosk_refuses_and_unconfirmed_changes_nothing(rules):
    env = dict(rules.env, EBPFTOP_KIOSK="1")
    p = subprocess.run(
        rules.cmd("rules", "add", "--yes", "deny icmp"), env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 3 and "read-only" in p.stderr
    p = rules.cli("rules", "add", "deny icmp", ok=False, input="")  # stdin is not a terminal: not confirmed
    assert p.returncode == 3
    assert rules.rules()["rules"] == []
    assert rules.ping(1)
    log = [json.loads(line) for line in Path(rules.env["EBPFTOP_AUDIT_LOG"]).read_text().splitlines()]
    assert [e.get("event") for e in log[-2:]] == ["refused", "cancelled"]


# --- SIGKILL in the middle of updates ----------------------------------------------

FLIPPER = """
import sys
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
book = RuleBook(sys.argv[1], sys.argv[2])
sets = [[r for _, r in parse_text(open(p).read())[0]] for p in sys.argv[3:5]]
book.replace(sets[0], "flipper")
print("ready", flush=True)
i = 1
while True:
    book.replace(sets[i % 2], "flipper")
    i += 1
"""


def test_sigkill_during_updates_leaves_the_old_or_the_new_set(rules, tmp_path):
    from ebpftop.collectors.rules.datapath import SETS
    from ebpftop.collectors.rules.ruleset import RuleBook
    from ebpftop.collectors.rules.spec import format_rule

    one = [f'deny udp to any port {2000 + i} "one"' for i in range(40)]
    two = [f'count tcp from 10.{i}.0.0/16 to any port 1-{1000 + i} "two"' for i in range(60)]
    files = []
    for name, lines in (("one", one), ("two", two)):
        files.append(tmp_path / f"{name}.rules")
        files[-1].write_text("\n".join(lines) + "\n")
    texts = {tuple(format_rule(r) for r in RuleBook_parse(f)) for f in files}
    rng = random.Random(5)
    for _ in range(12):
        child = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{rules.net.a.name}",
                PYTHON,
                "-c",
                FLIPPER,
                rules.pin_dir,
                rules.state_dir,
                *map(str, files),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=rules.env,
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0, 0.15))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        book = RuleBook(rules.pin_dir, rules.state_dir)
        try:
            cur = book.read()
            assert cur.problem is None
            assert tuple(format_rule(r) for r in cur.rules) in texts
            active = book.dp.active()
            kernel = book.dp.kernel_rules(active)
            assert [(s, a) for s, a, _ in kernel] == [
                (r.slot, {"count": 0, "allow": 1, "deny": 2}[r.action]) for r in cur.rules
            ]
            assert book.dp.meta(active)[0] == cur.gen
            assert SETS[active] in ("a", "b")
        finally:
            book.close()
    assert rules.ping(1)


def RuleBook_parse(path: Path):
    from ebpftop.collectors.rules.grammar import parse_text

    return [r for _, r in parse_text(path.read_text())[0]]


def test_headless_snapshot_carries_rules_and_counters(rules):
    rules.cli("rules", "add", "--yes", f'deny icmp from {rules.net.b_ip4} "snap"')
    assert not rules.ping(2)
    doc = json.loads(rules.cli("snapshot", "--json", "--source", "rules", "--duration", "1").stdout)
    src = doc["sources"]["rules"]
    assert src["health"]["state"] == "ok"
    [rule] = src["data"]["rules"]
    assert (rule["comment"], rule["action"], rule["packets"]) == ("snap", "deny", 2)
    assert rule["text"] == f'deny icmp from {rules.net.b_ip4}/32 "snap"'
    assert src["data"]["enforcing"] == 1
    assert sorted(src["data"]["attached"]) == [f"{rules.net.a_if} egress", f"{rules.net.a_if} ingress"]


def test_failed_attach_changes_nothing(rules):
    rules.cli("rules", "add", "--yes", 'count udp on lo "keep"')  # the program is loaded and on lo only
    env = dict(rules.env, EBPFTOP_RULES_IFACES=f"{rules.net.a_if},nosuch0")
    p = subprocess.run(
        rules.cmd("rules", "add", "--yes", "deny icmp"), env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 1 and "no interface named 'nosuch0' in this network namespace" in p.stderr, (
        p.stderr
    )
    listed = rules.rules()
    assert [r["comment"] for r in listed["rules"]] == ["keep"]
    assert sorted(listed["attached"]) == ["lo egress", "lo ingress"]  # the veth got no link
    assert rules.ping(1)


SESSION = """
import os, sys
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.ruleset import RuleBook
book = RuleBook(sys.argv[1], sys.argv[2])
me = os.getpid()
book.add(parse_rule('count udp "mine"').with_(session=me), "dash")
book.add(parse_rule('deny udp to any port 9 "enforce"').with_(session=me), "dash")
print(sorted(r.comment for r in book.read().rules), flush=True)
enforce = next(r for r in book.read().rules if r.comment == "enforce")
book.move(enforce.id, 0)
after = book.read().rules
print([r.comment for r in after], enforce.slot == after[0].slot and enforce.id == after[0].id, flush=True)
book.end_session(me)
print(sorted(r.comment for r in book.read().rules), flush=True)
"""


def test_session_count_rules_end_with_their_session(rules):
    p = subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{rules.net.a.name}",
            PYTHON,
            "-c",
            SESSION,
            rules.pin_dir,
            rules.state_dir,
        ],
        env=rules.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "['enforce', 'mine']",
        "['enforce', 'mine'] True",  # reorder keeps id and slot
        "['enforce']",
    ]  # the deny outlives the session


PLAN_FDS = """
import os, sys
from ebpftop.actions.rules import DeleteRules, FlushRules, MoveRule, SetRuleAction, plan
from ebpftop.core.settings import Settings
from ebpftop.core.audit import Actor

settings = Settings(rules_pin_dir=sys.argv[1], rules_state_dir=sys.argv[2])
actor = Actor(user="t", uid=0)
before = len(os.listdir("/proc/self/fd"))
for request in [DeleteRules([1]), SetRuleAction(1, "deny"), MoveRule(1, 0), FlushRules()]:
    for _ in range(20):
        plan(settings, request, actor)  # never performed: a cancelled or refused change
print(len(os.listdir("/proc/self/fd")) - before)
"""


def test_planned_but_never_performed_changes_leak_no_fds(rules):
    rules.cli("rules", "add", "--yes", 'count udp to any port 9 "fdcheck"')
    p = subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{rules.net.a.name}",
            PYTHON,
            "-c",
            PLAN_FDS,
            rules.pin_dir,
            rules.state_dir,
        ],
        env=rules.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0"


TEST_RUN = r"""
import ctypes, json, struct, sys
from ebpftop.collectors.bpfsys import bpf
from ebpftop.collectors.rules import bpfsys
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
pin, state, iface, rules_file = sys.argv[1:5]
book = RuleBook(pin, state, (iface,))
book.replace([r for _, r in parse_text(open(rules_file).read())[0]], "test")
slots = [r.slot for r in book.read().rules]

class Attr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 96)]

prog = bpfsys.obj_get(pin + "/prog_ebpftop_rl_in")
out = []
for hexpkt in json.loads(sys.stdin.read()):
    before = book.dp.rule_counters(slots)
    pkt = ctypes.create_string_buffer(bytes.fromhex(hexpkt))
    attr = Attr(prog_fd=prog, data_size_in=len(pkt) - 1, data_in=ctypes.addressof(pkt), repeat=1)
    bpf(10, attr)  # BPF_PROG_TEST_RUN
    after = book.dp.rule_counters(slots)
    hit = [s for s in slots if after[s][0] != before[s][0]]
    out.append([hit, attr.retval])
print(json.dumps({"slots": slots, "results": out}))
"""


def _packet(f) -> bytes:
    """Ethernet + IP (+ the first 4 bytes of TCP/UDP) for a FlowRecord-like flow."""
    import ipaddress
    import socket
    import struct as st

    proto = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}[f.proto]
    l4 = st.pack("!HH", f.sport, f.dport) + b"\0" * 16 if proto in (6, 17) else b"\x08\0" + b"\0" * 18
    if ":" in f.src:
        ip = (
            st.pack("!IHBB", 6 << 28, len(l4), proto, 64)
            + ipaddress.ip_address(f.src).packed
            + ipaddress.ip_address(f.dst).packed
        )
        eth = 0x86DD
    else:
        ip = st.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            0,
            0,
            64,
            proto,
            0,
            socket.inet_aton(f.src),
            socket.inet_aton(f.dst),
        )
        eth = 0x0800
    return b"\x02" * 6 + b"\x04" * 6 + st.pack("!H", eth) + ip + l4


def test_kernel_classifies_like_the_compiled_model(rules, tmp_path):
    """The loaded program (run on synthetic packets with BPF_PROG_TEST_RUN) picks the
    same rule as the model of its tables in test_rules_logic, for every path: host hash,
    trie, inline fields, port table, port intervals, protocol, IPv6 tries, no match."""
    from test_rules_logic import classify, flow

    from ebpftop.collectors.rules.compile import P_DPORT, P_SPORT, compile_rules
    from ebpftop.collectors.rules.grammar import parse_rule

    texts = [
        "deny tcp from 10.9.0.0/16 to any port 22",
        "count udp from 10.9.1.7 port 53",
        "allow tcp from 10.9.1.8 to 192.0.2.10 port 6000-6999",
        "count from 10.9.2.0/24 to 192.0.2.0/28",
        "deny udp to any port 9000-9100 in",
        "count icmp from 10.9.1.8",
        "deny from 2001:db8:9::/48",
        "count tcp from 2001:db8::7 port 1000-2000",
        "count to 192.0.2.11",
        "count udp from 0.0.0.0/8",
        "count tcp",
    ]
    texts += [f"count udp from 198.51.100.{i} to any port {4000 + i}" for i in range(1, 40)]
    (tmp_path / "set.rules").write_text("\n".join(texts) + "\n")
    c = compile_rules([parse_rule(t).with_(slot=i) for i, t in enumerate(texts)])
    assert c.fields & P_SPORT and not c.fields & P_DPORT  # source ports: 5 intervals; destination: 85
    rng = random.Random(11)
    flows = []
    for _ in range(400):
        v6 = rng.random() < 0.2
        src = rng.choice(
            ["2001:db8:9::5", "2001:db8::7", "2001:db9::1"]
            if v6
            else [
                "10.9.0.1",
                "10.9.1.7",
                "10.9.1.8",
                "10.9.2.200",
                "10.8.0.1",
                "0.0.0.0",
                "0.1.2.3",
                f"198.51.100.{rng.randrange(1, 45)}",
            ]
        )
        dst = rng.choice(["2001:db8::1"] if v6 else ["192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.3"])
        proto = rng.choice(["tcp", "udp", "icmp6" if v6 else "icmp"])
        flows.append(
            flow(
                proto=proto,
                src=src,
                dst=dst,
                sport=rng.choice([53, 1500, 40000]),
                dport=rng.choice([22, 6500, 9050, 4001 + rng.randrange(45), 80]),
            )
        )
    proc = subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{rules.net.a.name}",
            PYTHON,
            "-c",
            TEST_RUN,
            rules.pin_dir,
            rules.state_dir,
            rules.net.a_if,
            str(tmp_path / "set.rules"),
        ],
        input=json.dumps([_packet(f).hex() for f in flows]),
        capture_output=True,
        text=True,
        timeout=180,
        env=rules.env,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    slots = got["slots"]
    matched = set()
    for f, (hit, retval) in zip(flows, got["results"], strict=True):
        pos = classify(c, f)
        assert hit == ([] if pos is None else [slots[pos]]), f
        deny = pos is not None and texts[pos].startswith("deny")
        assert retval == (2 if deny else 0xFFFFFFFF), f
        matched.add(pos)
    assert len(matched) >= 10  # the packets took many different paths
