"""Rules logic without BPF: compilation to map entries (checked by evaluating the
entries the way the kernel does), limits, preview against flow records, rates, metadata."""

from __future__ import annotations

import ipaddress
import random

import pytest

from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.collector import RateKeeper
from ebpftop.collectors.rules.compile import (
    F_DPORT,
    F_DST4,
    F_DST6,
    F_IFDIR,
    F_SPORT,
    F_SRC4,
    F_SRC6,
    I_DPORT,
    I_DST4,
    I_SPORT,
    I_SRC4,
    MAX_RULES,
    W_DPORT,
    W_DST4,
    W_DST6,
    W_SPORT,
    W_SRC4,
    W_SRC6,
    LimitError,
    address_table,
    compile_rules,
    port_table,
)
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.collectors.rules.preview import describe, matches_flow, preview
from ebpftop.collectors.rules.state import SetState, StateDir
from ebpftop.core.codec import to_jsonable
from ebpftop.core.model import Health, HealthState, Snapshot, from_json, to_json

IFACES = {"eth0": 2, "eth1": 3}
PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}


def rules_of(*texts):
    return [parse_rule(t).with_(slot=i, id=i + 1) for i, t in enumerate(texts)]


def lpm(entries, value: int, width: int) -> int:
    best, bits = -1, 0
    for (plen, data), b in entries.items():
        v = int.from_bytes(data, "big")
        if plen > best and (plen == 0 or v >> (width - plen) == value >> (width - plen)):
            best, bits = plen, b
    return bits


def classify(c, flow: FlowRecord) -> int | None:
    """The kernel's algorithm (rules.bpf.c classify) over the compiled entries: position
    of the first match."""
    v6 = int(flow.family == 6)
    d = 0 if flow.direction == "ingress" else 1
    p = PROTO[flow.proto]
    acc = c.proto[(v6 * 2 + d) * 256 + p]
    if c.fields & F_IFDIR:
        acc |= c.proto[1024 + v6 * 256 + p] & c.ifdir.get(IFACES[flow.iface] * 2 + d, 0)
    has_ports = flow.proto in ("tcp", "udp")
    for name, value, wi, f, i in (
        ("src", flow.src, W_SRC6 if v6 else W_SRC4, F_SRC6 if v6 else F_SRC4, I_SRC4),
        ("dst", flow.dst, W_DST6 if v6 else W_DST4, F_DST6 if v6 else F_DST4, I_DST4),
        ("sport", flow.sport, W_SPORT, F_SPORT, I_SPORT),
        ("dport", flow.dport, W_DPORT, F_DPORT, I_DPORT),
    ):
        if not c.fields & f:
            continue  # nobody constrains it
        if "port" in name:
            key, width = name, 16
            if not has_ports:
                acc &= c.wild[wi]
                continue
        else:
            key, width = f"{name}{6 if v6 else 4}", 128 if v6 else 32
            value = int(ipaddress.ip_address(value))
        if v6 and "port" not in name:
            acc &= c.wild[wi] | lpm(c.tries[key], value, width)
        elif c.fields & i and "port" in name:
            lo, hi = c.inline[key]
            acc &= ~0 if lo <= value <= hi else c.wild[wi]
        elif c.fields & i:
            net, mask = c.inline[key]
            acc &= ~0 if value & mask == net else c.wild[wi]
        else:
            acc &= c.tables[key].lookup(value, width)
    return (acc & -acc).bit_length() - 1 if acc else None


def flow(
    proto="tcp",
    src="10.0.0.5",
    sport=40000,
    dst="192.0.2.10",
    dport=6379,
    iface="eth0",
    direction="ingress",
    packets=10,
    nbytes=1000,
):
    return FlowRecord(
        iface=iface,
        direction=direction,
        proto=proto,
        src=src,
        sport=sport,
        dst=dst,
        dport=dport,
        packets=packets,
        bytes=nbytes,
        bps=None,
        pps=None,
        first_seen=0.0,
        last_seen=0.0,
    )


def test_port_table_gives_every_port_the_ranges_that_hold_it():
    rng = random.Random(5)
    ranges = [
        (lo, min(65535, lo + rng.choice([0, 1, 7, 300, 40000])), 1 << i)
        for i, lo in enumerate(rng.randrange(1, 65536) for _ in range(256))
    ]
    wild = 1 << 300
    t = port_table(ranges, wild)
    assert len(t.classes) <= 2 * 256 + 1
    assert not t.hi  # far more than PINT intervals: only the table of every port
    for port in (
        list(range(0, 65536, 97)) + [lo for lo, _, _ in ranges] + [hi for _, hi, _ in ranges] + [65535]
    ):
        assert t.lookup(port, 16) == wild | sum(b for lo, hi, b in ranges if lo <= port <= hi), port


@pytest.mark.parametrize("n", [1, 2, 9, 15])
def test_few_port_intervals_are_searched_in_place_and_agree_with_the_table(n):
    """Up to PINT intervals, the kernel searches their last ports (struct pint) instead
    of reading the table of every port; both must give every port the same vector."""
    from ebpftop.collectors.rules.compile import PINT, Table, pack_intervals

    rng = random.Random(n)
    ranges = [
        (lo, min(65535, lo + rng.choice([0, 1, 300])), 1 << i)
        for i, lo in enumerate(rng.sample(range(1, 65535), n))
    ]
    wild = 1 << 200
    t = port_table(ranges, wild)
    intervals = len({0, 65536} | {lo for lo, _, _ in ranges} | {hi + 1 for _, hi, _ in ranges}) - 1
    assert len(t.hi) == intervals <= PINT and t.hi[-1] == 65535 and t.hi == sorted(t.hi)
    whole = Table(t.root, classes=t.classes)  # the same table read through root
    for port in (
        list(range(0, 65536, 61))
        + [x + d for lo, hi, _ in ranges for x in (lo, hi) for d in (-1, 0, 1)]
        + [0, 65535]
    ):
        port = min(65535, max(0, port))
        want = wild | sum(b for lo, hi, b in ranges if lo <= port <= hi)
        assert t.lookup(port, 16) == whole.lookup(port, 16) == want, port
    packed = pack_intervals(t)
    assert len(packed) == 2 * PINT + 32 * PINT and packed[2 * len(t.hi) : 2 * PINT] == b"\xff\xff" * (
        PINT - len(t.hi)
    )


def test_more_port_intervals_than_pint_use_the_table():
    from ebpftop.collectors.rules.compile import P_DPORT, PINT

    ranges = [(100 * i + 1, 100 * i + 1, 1 << i) for i in range(PINT // 2)]  # 2 * 16 + 1 intervals
    assert not port_table(ranges, 0).hi
    assert port_table(ranges[:-1], 0).hi  # 31 intervals
    rules = [parse_rule(f"count udp to any port {lo}").with_(slot=i) for i, (lo, _, _) in enumerate(ranges)]
    assert not compile_rules(rules).fields & P_DPORT
    assert compile_rules(rules[:-1]).fields & P_DPORT


def test_address_table_is_a_longest_prefix_match():
    rng = random.Random(7)
    nets = {
        ipaddress.ip_network("0.0.0.0/0"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("10.1.2.0/24"),
        ipaddress.ip_network("10.1.2.128/25"),
        ipaddress.ip_network("10.1.2.130/32"),
        ipaddress.ip_network("10.1.0.0/17"),
    }
    while len(nets) < 300:
        plen = rng.choice([8, 12, 16, 17, 20, 23, 24, 25, 28, 31, 32])
        nets.add(
            ipaddress.ip_network((rng.choice([10, 198, 203]) << 24 | rng.getrandbits(24), plen), strict=False)
        )
    bits = {n: 1 << i for i, n in enumerate(sorted(nets, key=str))}
    entries = {}
    for n, b in bits.items():
        entries[(n.prefixlen, int(n.network_address))] = b
    from ebpftop.collectors.rules.compile import _union_prefixes

    t = address_table(_union_prefixes(entries, 32), "src4", wild=1 << 400)
    probes = [0] + [int(n.network_address) for n in nets] + [int(n.broadcast_address) for n in nets]
    probes += [rng.choice([10, 198, 203, 11]) << 24 | rng.getrandbits(24) for _ in range(3000)]
    for a in probes:
        ip = ipaddress.ip_address(a)
        want = 1 << 400
        for n, b in bits.items():
            if ip in n:
                want |= b  # the longest match carries every containing prefix's rules
        assert t.lookup(a, 32) == want, ip


def test_hosts_that_fit_no_hash_slot_go_to_the_trie(monkeypatch):
    monkeypatch.setattr(
        "ebpftop.collectors.rules.compile.MULTIPLIERS", ((1, 1),)
    )  # slot = the first 10 bits, twice
    hosts = {(32, 0x0A000000 | i * 77): 1 << i for i in range(20)}  # 10.0.x.y: all in one slot
    hosts[(24, 0x0A000000)] = 1 << 30
    from ebpftop.collectors.rules.compile import _union_prefixes

    t = address_table(_union_prefixes(hosts, 32), "src4", wild=1 << 31)
    assert sum(1 for s in t.slots if s) == 1 and t.trie and t.nodes
    for i in range(20):
        want = 1 << i | 1 << 31 | (1 << 30 if i * 77 < 256 else 0)
        assert t.lookup(0x0A000000 | i * 77, 32) == want
    assert t.lookup(0x0A000001, 32) == 1 << 30 | 1 << 31 and t.lookup(0x0B000000, 32) == 1 << 31


def test_cuckoo_hash_holds_every_host_of_a_full_set():
    """256 hosts, however alike, each get one of their two slots (no trie), and every
    host is found in the slot the kernel reads."""
    from ebpftop.collectors.rules.compile import slot_of

    for base in (0x0A000000, 0xC6336400, 0x00000001):
        hosts = {(32, base + i): 1 << i for i in range(128)} | {
            (32, base + 128 + i * 256): 1 << (128 + i) for i in range(128)
        }
        t = address_table(hosts, "dst4", wild=0)
        assert not t.trie and sum(1 for s in t.slots if s) == 256
        for (_, a), bits in hosts.items():
            assert any(t.slots[slot_of(a, m)] and t.slots[slot_of(a, m)][0] == a for m in t.mults)
            assert t.lookup(a, 32) == bits


def test_compiled_entries_classify_like_a_linear_scan():
    rules = rules_of(
        "allow tcp from 10.0.0.0/24 to any port 6379",
        "deny tcp to any port 6000-6999 in",
        "count udp from any port 53",
        "deny from 10.0.0.0/8 on eth1",
        "count icmp",
        "deny tcp from 2001:db8::/32 to any port 22",
        "count",
    )
    for extra in (
        [],
        rules_of(
            "deny tcp from 10.0.7.0/24 to 192.0.2.10 port 7000-7010",
            "count udp to any port 99",
            "count udp from 10.1.0.0/16 port 53 on eth0",
        ),
    ):
        _classify_like_a_linear_scan(rules + extra)


def _classify_like_a_linear_scan(rules):
    c = compile_rules(rules, ifindex=IFACES.__getitem__)
    rng = random.Random(1)
    for _ in range(3000):
        v6 = rng.random() < 0.3
        src = (
            (f"2001:db8::{rng.randrange(3)}" if rng.random() < 0.5 else "2001:db9::1")
            if v6
            else f"10.{rng.choice([0, 1])}.{rng.choice([0, 7])}.{rng.randrange(256)}"
        )
        dst = "2001:db8::99" if v6 else "192.0.2.10"
        f = flow(
            proto=rng.choice(["tcp", "udp", "icmp6" if v6 else "icmp"]),
            src=src,
            dst=dst,
            sport=rng.choice([53, 40000]),
            dport=rng.choice([22, 6379, 6500, 7000, 53]),
            iface=rng.choice(["eth0", "eth1"]),
            direction=rng.choice(["ingress", "egress"]),
        )
        expected = next((i for i, r in enumerate(rules) if matches_flow(r, f)), None)
        assert classify(c, f) == expected, f


def test_limits_refuse_with_the_reason():
    many = rules_of(*["count udp to any port 1000"] * MAX_RULES)
    compile_rules(many)
    with pytest.raises(LimitError, match="257 rules: the datapath holds at most 256; nothing was changed"):
        compile_rules(many + rules_of("count"))
    rng = random.Random(3)
    spans = [
        (lo, rng.randrange(lo + 20000, 65535) & ~1)
        for lo in (rng.randrange(1, 20000) | 1 for _ in range(256))
    ]
    ranges = [
        parse_rule(f"count tcp to any port {lo}-{hi}").with_(slot=i) for i, (lo, hi) in enumerate(spans)
    ]
    assert len(compile_rules(ranges).tables["dport"].classes) <= 513  # any 256 ranges fit the port table
    # the most trie nodes 256 rules can ask for: every prefix longer than /24 in a /16 of its own
    nets = [parse_rule(f"deny from {i}.{i}.1.0/25 to 10.{i}.2.3").with_(slot=i) for i in range(1, 256)]
    c = compile_rules(nets)
    assert len(c.tables["src4"].nodes) == 2 * 255
    assert (
        sum(1 for s in c.tables["dst4"].slots if s) == 255 and not c.tables["dst4"].nodes
    )  # hosts: the hash
    with pytest.raises(LimitError, match="no interface named 'nope0'"):
        compile_rules(rules_of("deny on nope0"), ifindex=lambda n: (_ for _ in ()).throw(OSError()))


def test_ttl_vectors_drop_expired_rules_in_order():
    rules = rules_of("deny ttl 10s", "deny ttl 5s", "count", "deny ttl 5s")
    exp = {1: 500, 2: 200, 3: 0, 4: 200}
    c = compile_rules(rules, expires=lambda r: exp[r.id])
    assert c.exptimes == [200, 500]
    assert c.alive == [0b1111, 0b0101, 0b0100]


def test_preview_and_describe():
    flows = [flow(dport=6379, nbytes=5000), flow(src="10.0.0.9", dport=6379, nbytes=9000), flow(dport=22)]
    rule = parse_rule("deny tcp from 10.0.0.0/24 to any port 6379 in ttl 15m")
    p = preview(rule, flows)
    assert [f.bytes for f in p.flows] == [9000, 5000]
    assert p.text.startswith(
        "this deny would drop 2 recent flows (20 packets, 14000 bytes): tcp 10.0.0.9:40000 -> "
    )
    earlier = rules_of("allow tcp from 10.0.0.9")
    assert preview(rule, flows, earlier).bytes == 5000
    none = preview(parse_rule("deny udp"), flows)
    assert none.flows == () and "would drop nothing" in none.text
    assert describe(rule) == (
        "DROPS tcp packets from 10.0.0.0/24 to any address port 6379 arriving on every "
        "interface the rules program is attached to for 15m"
    )


def test_rates_and_history():
    rk = RateKeeper(history=3)
    assert rk.update(1, 10.0, 100, 1000) == (None, None, ())
    assert rk.update(1, 12.0, 300, 3000) == (100.0, 1000.0, (100.0,))
    assert rk.update(1, 13.0, 300, 3000)[2] == (100.0, 0.0)
    rk.forget(set())
    assert rk.update(1, 14.0, 300, 3000) == (None, None, ())


def test_metadata_round_trip(tmp_path):
    sd = StateDir(str(tmp_path / "st"))
    rules = [
        r.with_(author="alice@192.0.2.1", created=1.5, expires=901.5)
        for r in rules_of(
            'deny tcp from 203.0.113.0/24 to any port 6379-6380 on eth0 in ttl 15m "scraper"', "count"
        )
    ]
    sd.write("a", SetState(4, 9, rules))
    assert sd.read("a") == SetState(4, 9, rules)
    assert sd.read("b") is None
    (tmp_path / "st" / "set-b.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"set-b\.json: unreadable rule metadata"):
        sd.read("b")


def test_payload_json_round_trip():
    rec = RuleRecord(
        id=1,
        position=0,
        action="deny",
        text="deny icmp",
        packets=3,
        bytes=294,
        pps=1.5,
        bps=None,
        last_hit=10.0,
        author="a",
        created=1.0,
        expires=None,
        expired=False,
        history=(1.0, 1.5),
    )
    data = RulesData((rec,), 1, ("eth0 ingress",), 7, 256)
    snap = Snapshot("rules", 1, 2.0, Health(HealthState.OK, "", "", 2.0, 0), data)
    again = from_json(to_json(snap))
    assert again.data == data
    assert to_jsonable(data)["rules"][0]["bps"] is None


def test_enforced_summary_lists_allow_and_deny_only():
    from ebpftop.collectors.rules.summary import enforced_lines, quit_question

    def rec(i, action, expires=None, expired=False):
        return RuleRecord(
            id=i,
            position=i,
            action=action,
            text=f"{action} icmp",
            packets=0,
            bytes=0,
            pps=None,
            bps=None,
            last_hit=None,
            author="bob@198.51.100.7",
            created=1000.0,
            expires=expires,
            expired=expired,
        )

    data = RulesData(
        (rec(1, "deny", 1900.0), rec(2, "count"), rec(3, "allow"), rec(4, "deny", 1000.5, True)),
        2,
        (),
        3,
        256,
    )
    assert enforced_lines(data, now=1300.0) == [
        "#1 deny icmp  (by bob@198.51.100.7, 5m ago, expires in 10m)",
        "#3 allow icmp  (by bob@198.51.100.7, 5m ago, no expiry)",
    ]
    assert quit_question(data, now=1300.0).startswith("2 rules will keep enforcing after ebpftop exits:\n#1 ")
    assert quit_question(RulesData((rec(2, "count"),), 0, (), 1, 256)) is None


@pytest.mark.parametrize("marker, layout", [(None, 1), ("layout2", 2), ("layout3", 3), ("layout4", 4)])
def test_pins_of_an_older_layout_are_reported_and_only_flush_touches_them(tmp_path, marker, layout):
    """Pins written by an older ebpftop (v1, before layouts were named: LPM tries
    everywhere, coarse-ns times; v2: per-CPU counters; v3: counters by slot; v4: no port
    intervals in the set) are never read as ours: changes are
    refused with the reason, flush removes them. Plain files stand in for the pins: only
    names are looked at."""
    from ebpftop.collectors.rules.datapath import LAYOUT, PROGS, DatapathError
    from ebpftop.collectors.rules.ruleset import RuleBook

    pin = tmp_path / "pins"
    pin.mkdir()
    for name in (
        "active",
        "counters",
        "meta_a",
        "src4_a",
        *(f"prog_{p}" for p in PROGS),
        *([marker] if marker else []),
    ):
        (pin / name).write_text("")
    book = RuleBook(str(pin), str(tmp_path / "state"))
    cur = book.read()
    assert LAYOUT == 5
    assert cur.rules == [] and f"older ebpftop (map layout {layout}; this one reads layout 5)" in cur.problem
    assert "keep enforcing" in cur.problem and "ebpftop rules flush" in cur.problem
    with pytest.raises(DatapathError, match="older ebpftop"):
        book.add(parse_rule("deny udp"), "alice")
    before = {
        "active",
        "counters",
        "meta_a",
        "src4_a",
        *(f"prog_{p}" for p in PROGS),
        *([marker] if marker else []),
    }
    assert {p.name for p in pin.iterdir()} == before  # untouched
    book.flush("alice")
    assert not pin.exists()


def test_kernel_clock_round_trips(monkeypatch):
    from ebpftop.collectors import kclock

    monkeypatch.setattr(kclock, "calibration", lambda: (250, 4_294_967_296, 10_000_000_000))
    assert kclock.jiffies_at(10_000_000_000 + 2_000_000_000) == 4_294_967_296 + 500
    assert kclock.mono_of(4_294_967_296 + 500) == 12_000_000_000
    assert kclock.jiffies_at(10_000_000_000 + 3_999_999) == 4_294_967_296  # a tick is 4 ms at HZ=250


def test_remove_leaves_no_empty_ebpftop_directory(tmp_path):
    """`flush` and `cleanup` remove the pin directory and the `ebpftop` directory load()
    made above it, but only when nothing else is in it. Plain files stand in for pins."""
    from ebpftop.collectors.rules.datapath import Datapath

    for other in (False, True):
        top = tmp_path / str(other) / "ebpftop"
        (top / "rules").mkdir(parents=True)
        (top / "rules" / "active").write_text("")
        if other:
            (top / "flows-something").write_text("")
        gone = Datapath(str(top / "rules")).remove()
        assert gone == [f"pin {top / 'rules' / 'active'}"]
        assert not (top / "rules").exists()
        assert top.exists() == other
