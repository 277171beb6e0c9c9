"""Rules logic without BPF: compilation to map entries (checked by evaluating the
entries the way the kernel does), limits, preview against flow records, rates, metadata."""

from __future__ import annotations

import ipaddress
import random

import pytest

from ebpftop.collectors.codec import to_jsonable
from ebpftop.collectors.model import Health, HealthState, Snapshot, from_json, to_json
from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.collector import RateKeeper
from ebpftop.collectors.rules.compile import (
    MAX_RULES, W_DPORT, W_DST4, W_DST6, W_IN, W_SPORT, W_SRC4, W_SRC6, LimitError, compile_rules, port_blocks)
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.collectors.rules.preview import describe, matches_flow, preview
from ebpftop.collectors.rules.state import StateDir, SetState

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
    """The kernel's algorithm over the compiled entries: position of the first match."""
    v6 = flow.family == 6
    acc = c.proto[PROTO[flow.proto]]
    d = 0 if flow.direction == "ingress" else 1
    acc &= c.wild[W_IN + d] | c.ifdir.get(IFACES[flow.iface] * 2 + d, 0)
    w = 128 if v6 else 32
    for name, addr, wi in (("src", flow.src, W_SRC6 if v6 else W_SRC4), ("dst", flow.dst, W_DST6 if v6 else W_DST4)):
        acc &= c.wild[wi] | lpm(c.tries[f"{name}{6 if v6 else 4}"], int(ipaddress.ip_address(addr)), w)
    has_ports = flow.proto in ("tcp", "udp")
    acc &= c.wild[W_SPORT] | (lpm(c.tries["sport"], flow.sport, 16) if has_ports else 0)
    acc &= c.wild[W_DPORT] | (lpm(c.tries["dport"], flow.dport, 16) if has_ports else 0)
    return (acc & -acc).bit_length() - 1 if acc else None


def flow(proto="tcp", src="10.0.0.5", sport=40000, dst="192.0.2.10", dport=6379, iface="eth0", direction="ingress",
         packets=10, nbytes=1000):
    return FlowRecord(iface=iface, direction=direction, proto=proto, src=src, sport=sport, dst=dst, dport=dport,
                      packets=packets, bytes=nbytes, bps=None, pps=None, first_seen=0.0, last_seen=0.0)


@pytest.mark.parametrize("lo,hi", [(1, 1), (1, 65535), (1024, 65535), (80, 80), (8000, 8100), (3, 17), (65535, 65535)])
def test_port_blocks_cover_the_range_exactly(lo, hi):
    covered = []
    for plen, start in port_blocks(lo, hi):
        size = 1 << (16 - plen)
        assert start % size == 0  # aligned
        covered += range(start, start + size)
    assert covered == list(range(lo, hi + 1))
    assert len(port_blocks(lo, hi)) <= 30


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
    c = compile_rules(rules, ifindex=IFACES.__getitem__)
    rng = random.Random(1)
    for _ in range(3000):
        v6 = rng.random() < 0.3
        src = (f"2001:db8::{rng.randrange(3)}" if rng.random() < 0.5 else "2001:db9::1") if v6 else \
            f"10.{rng.choice([0, 1])}.{rng.choice([0, 7])}.{rng.randrange(256)}"
        dst = "2001:db8::99" if v6 else "192.0.2.10"
        f = flow(proto=rng.choice(["tcp", "udp", "icmp6" if v6 else "icmp"]), src=src, dst=dst,
                 sport=rng.choice([53, 40000]), dport=rng.choice([22, 6379, 6500, 7000, 53]),
                 iface=rng.choice(["eth0", "eth1"]), direction=rng.choice(["ingress", "egress"]))
        expected = next((i for i, r in enumerate(rules) if matches_flow(r, f)), None)
        assert classify(c, f) == expected, f


def test_limits_refuse_with_the_reason(monkeypatch):
    many = rules_of(*["count udp to any port 1000"] * MAX_RULES)
    compile_rules(many)
    with pytest.raises(LimitError, match="257 rules: the datapath holds at most 256; nothing was changed"):
        compile_rules(many + rules_of("count"))
    rng = random.Random(3)
    spans = [(lo, rng.randrange(lo + 20000, 65535) & ~1) for lo in (rng.randrange(1, 20000) | 1 for _ in range(256))]
    ranges = [parse_rule(f"count tcp to any port {lo}-{hi}").with_(slot=i) for i, (lo, hi) in enumerate(spans)]
    compile_rules(ranges)  # ~2200 distinct port blocks: fits the 4096-entry trie
    # 256 adversarial ranges can need up to 7680 blocks; a smaller trie shows the refusal
    monkeypatch.setattr("ebpftop.collectors.rules.compile.PORT_TRIE_MAX", 1000)
    with pytest.raises(LimitError, match=r"rule \d+ \(count tcp to any port .*\): port ranges need more than 1000 dport"):
        compile_rules(ranges)
    with pytest.raises(LimitError, match="no interface named 'nope0'"):
        compile_rules(rules_of("deny on nope0"), ifindex=lambda n: (_ for _ in ()).throw(OSError()))


def test_ttl_vectors_drop_expired_rules_in_order():
    rules = rules_of("deny ttl 10s", "deny ttl 5s", "count", "deny ttl 5s")
    exp = {1: 500, 2: 200, 3: 0, 4: 200}
    c = compile_rules(rules, expires_ns=lambda r: exp[r.id])
    assert c.exptimes == [200, 500]
    assert c.alive == [0b1111, 0b0101, 0b0100]


def test_preview_and_describe():
    flows = [flow(dport=6379, nbytes=5000), flow(src="10.0.0.9", dport=6379, nbytes=9000), flow(dport=22)]
    rule = parse_rule('deny tcp from 10.0.0.0/24 to any port 6379 in ttl 15m')
    p = preview(rule, flows)
    assert [f.bytes for f in p.flows] == [9000, 5000]
    assert p.text.startswith("this deny would drop 2 recent flows (20 packets, 14000 bytes): tcp 10.0.0.9:40000 -> ")
    earlier = rules_of("allow tcp from 10.0.0.9")
    assert preview(rule, flows, earlier).bytes == 5000
    none = preview(parse_rule("deny udp"), flows)
    assert none.flows == () and "would drop nothing" in none.text
    assert describe(rule) == ("DROPS tcp packets from 10.0.0.0/24 to any address port 6379 arriving on every "
                              "interface the rules program is attached to for 15m")


def test_rates_and_history():
    rk = RateKeeper(history=3)
    assert rk.update(1, 10.0, 100, 1000) == (None, None, ())
    assert rk.update(1, 12.0, 300, 3000) == (100.0, 1000.0, (100.0,))
    assert rk.update(1, 13.0, 300, 3000)[2] == (100.0, 0.0)
    rk.forget(set())
    assert rk.update(1, 14.0, 300, 3000) == (None, None, ())


def test_metadata_round_trip(tmp_path):
    sd = StateDir(str(tmp_path / "st"))
    rules = [r.with_(author="alice@192.0.2.1", created=1.5, expires=901.5) for r in
             rules_of('deny tcp from 203.0.113.0/24 to any port 6379-6380 on eth0 in ttl 15m "scraper"', "count")]
    sd.write("a", SetState(4, 9, rules))
    assert sd.read("a") == SetState(4, 9, rules)
    assert sd.read("b") is None
    (tmp_path / "st" / "set-b.json").write_text("{not json")
    with pytest.raises(ValueError, match="set-b.json: unreadable rule metadata"):
        sd.read("b")


def test_payload_json_round_trip():
    rec = RuleRecord(id=1, position=0, action="deny", text="deny icmp", packets=3, bytes=294, pps=1.5, bps=None,
                     last_hit=10.0, author="a", created=1.0, expires=None, expired=False, history=(1.0, 1.5))
    data = RulesData((rec,), 1, ("eth0 ingress",), 7, 256)
    snap = Snapshot("rules", 1, 2.0, Health(HealthState.OK, "", "", 2.0, 0), data)
    again = from_json(to_json(snap))
    assert again.data == data
    assert to_jsonable(data)["rules"][0]["bps"] is None


def test_enforced_summary_lists_allow_and_deny_only():
    from ebpftop.collectors.rules.summary import enforced_lines, quit_question

    def rec(i, action, expires=None, expired=False):
        return RuleRecord(id=i, position=i, action=action, text=f"{action} icmp", packets=0, bytes=0, pps=None,
                          bps=None, last_hit=None, author="bob@198.51.100.7", created=1000.0, expires=expires,
                          expired=expired)

    data = RulesData((rec(1, "deny", 1900.0), rec(2, "count"), rec(3, "allow"), rec(4, "deny", 1000.5, True)),
                     2, (), 3, 256)
    assert enforced_lines(data, now=1300.0) == [
        "#1 deny icmp  (by bob@198.51.100.7, 5m ago, expires in 10m)",
        "#3 allow icmp  (by bob@198.51.100.7, 5m ago, no expiry)",
    ]
    assert quit_question(data, now=1300.0).startswith("2 rules will keep enforcing after ebpftop exits:\n#1 ")
    assert quit_question(RulesData((rec(2, "count"),), 0, (), 1, 256)) is None
