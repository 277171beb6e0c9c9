"""From a flow to a rule, and what rule changes say: the rule for a connection or a group
(pure), the deny dialog's interfaces and lifetime, the Rules pane's progress line, the
Canary pane's undo hint; and end to end with real BPF in namespaces made here: `r` on
a flow, counted; `r`, ctrl+t, deny with a TTL, dropped; the TTL runs out in the
kernel, the packets pass again.
"""

from __future__ import annotations

import json

import pytest

from ebpftop.actions.rules import interfaces_line, lifetime_line, switched
from ebpftop.actions.rules_progress import ChangeProgress, tracked
from ebpftop.collectors.flows.model import FlowPath, FlowRecord
from ebpftop.collectors.rollout.model import RolloutState
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.preview import preview
from ebpftop.collectors.rules.spec import format_rule
from ebpftop.tui.panes.canary.render import rollout_parts
from ebpftop.tui.panes.flows.to_rule import parses, rule_for
from ebpftop.tui.panes.rules.edit import deny_or_count
from ebpftop.tui.panes.rules.pane import applying_text

NOW = 1_800_000_000.0


def conn(
    src="203.0.113.7", sport=41000, dst="10.0.0.2", dport=6379, proto="tcp", direction="ingress", iface="eth0"
) -> FlowRecord:
    """A connection: src opened it; `direction` is where its first packet was seen."""
    back = "egress" if direction == "ingress" else "ingress"
    return FlowRecord(
        iface=iface,
        direction=direction,
        proto=proto,
        src=src,
        sport=sport,
        dst=dst,
        dport=dport,
        packets=30,
        bytes=3000,
        bps=None,
        pps=None,
        first_seen=NOW - 10,
        last_seen=NOW - 1,
        paths=(
            FlowPath(iface, direction, True, 20, 2000, None, None),
            FlowPath(iface, back, False, 10, 1000, None, None),
        ),
    )


def test_a_folds_selection_keeps_to_the_filter_its_row_was_built_under():
    """A fold is made of the flows the filter let through: its rule and its detail are too."""
    from dataclasses import replace

    from ebpftop.collectors.flows import filter as flt
    from ebpftop.collectors.flows.view import fold_key
    from ebpftop.tui.panes.flows.detail import Selection

    a = replace(conn(sport=41000), closed=True)
    b = replace(conn(sport=41001, iface="eth1"), closed=True)
    assert fold_key(a) == fold_key(b)  # one fold without a filter
    only = flt.parse("iface:eth0")
    sel = Selection("fold", fold=fold_key(a), accept=only)
    assert sel.matches(a, NOW) and not sel.matches(b, NOW)
    assert Selection("fold", fold=fold_key(a)).matches(b, NOW)


# --- the rule for a row ------------------------------------------------------------------


def test_a_connection_the_remote_opened_becomes_its_packets_to_this_hosts_port():
    draft = rule_for([conn()])
    assert draft.text == "count tcp from 203.0.113.7 to 10.0.0.2 port 6379 on eth0 in"
    assert "203.0.113.7" in draft.note and "port 6379" in draft.note
    rule = parses(draft)
    # It matches the remote's way of the connection only: its 20 packets, not our 10 replies.
    p = preview(rule, [conn()])
    assert (len(p.flows), p.packets) == (1, 20)


def test_a_connection_this_host_opened_becomes_the_remotes_replies_from_its_port():
    c = conn(src="10.0.0.2", sport=50000, dst="198.51.100.9", dport=443, direction="egress")
    draft = rule_for([c])
    assert draft.text == "count tcp from 198.51.100.9 port 443 to 10.0.0.2 on eth0 in"
    assert preview(parses(draft), [c]).packets == 10  # the replies: the path that goes dst -> src


def test_icmp_and_other_protocols_have_no_ports():
    assert rule_for([conn(proto="icmp6", src="2001:db8::7", dst="2001:db8::2", sport=128, dport=0)]).text == (
        "count icmp from 2001:db8::7 to 2001:db8::2 on eth0 in"
    )
    assert rule_for([conn(proto="47")]).text == "count from 203.0.113.7 to 10.0.0.2 on eth0 in"


def test_a_remote_group_is_everything_from_it_and_a_network_key_its_network():
    flows = [conn(dport=6379), conn(dport=22, sport=41001)]
    assert rule_for(flows, "remote", "203.0.113.7").text == "count from 203.0.113.7 on eth0 in"
    net = rule_for(flows, "remote/24", "203.0.113.0/24")
    assert net.text == "count from 203.0.113.0/24 on eth0 in"
    v6 = [conn(src="2001:db8:1::7", dst="2001:db8:2::2")]
    assert rule_for(v6, "remote/64", "2001:db8:1::/64").text == "count from 2001:db8:1::/64 on eth0 in"
    assert parses(rule_for(v6)).match.src == "2001:db8:1::7/128"
    # flows on two interfaces: no `on`, and the note says where it acts then
    two = [conn(), conn(iface="eth1", sport=41002)]
    draft = rule_for(two, "remote", "203.0.113.7")
    assert draft.text == "count from 203.0.113.7 in"
    assert "every interface the rules program is attached to" in draft.note


def test_a_port_group_is_to_that_port_when_this_host_serves_it_else_from_it():
    assert rule_for([conn()], "port", "tcp/6379").text == "count tcp to any port 6379 on eth0 in"
    client = conn(src="10.0.0.2", sport=50000, dst="198.51.100.9", dport=443, direction="egress")
    assert rule_for([client], "port", "443").text == "count tcp from any port 443 on eth0 in"


def test_a_process_is_matched_by_what_its_connections_share():
    # two connections of one remote to one service: the connection's rule
    same = [conn(sport=41000), conn(sport=41001)]
    assert rule_for(same, "process", "redis [7]").text == (
        "count tcp from 203.0.113.7 to 10.0.0.2 port 6379 on eth0 in"
    )
    # many remotes, one service port: that port, and the note says how many flows it covers
    served = [conn(src=f"203.0.113.{i}", sport=41000 + i) for i in range(3)] + [
        conn(src="192.0.2.1", dport=22, sport=50000)
    ]
    draft = rule_for(served, "process", "redis [7]")
    assert draft.text == "count tcp to any port 6379 on eth0 in"
    assert "3 of its 4 flows" in draft.note and "not processes" in draft.note
    for d in (draft, rule_for(same, "process", "x")):
        assert parse_rule(d.text) is not None


def test_nothing_common_is_said_not_guessed():
    with pytest.raises(ValueError, match="no remote and no tcp/udp port"):
        rule_for([conn(proto="47"), conn(proto="47", src="192.0.2.1")], "process", "gre [1]")
    with pytest.raises(ValueError, match="not in the latest sample"):
        rule_for([], None)


def test_ctrl_t_makes_a_deny_with_a_ttl_and_back():
    rule = parse_rule("count tcp from 203.0.113.7 to any port 6379 in")
    deny = deny_or_count(rule)
    assert format_rule(deny) == "deny tcp from 203.0.113.7/32 to any port 6379 in ttl 15m"
    assert deny_or_count(deny).action == "count"
    kept = deny_or_count(parse_rule("count udp to any port 53 ttl 2h"))
    assert kept.ttl == 7200  # a TTL the rule has is kept


# --- what a change says -----------------------------------------------------------------------


class Book:
    """What interfaces_line reads of a RuleBook."""

    def __init__(self, attached, default):
        self._attached, self._default = attached, default

    def attached_ifaces(self):
        return list(self._attached)

    def targets(self, rules):
        named = list(dict.fromkeys(r.match.iface for r in rules if r.match.iface))
        if any(r.match.iface is None for r in rules):
            named += [i for i in self._default if i not in named]
        return named


def test_the_deny_dialog_names_every_interface_and_those_attached_now():
    book = Book(["lab0"], ["eth0", "lab0", "lab1"])
    deny = parse_rule("deny tcp from 203.0.113.7 ttl 15m")
    line = interfaces_line(book, [deny], deny)
    assert line == (
        "Interfaces (every interface the rules program is attached to): lab0, eth0, lab1; "
        "the rules program is attached now to eth0, lab1."
    )
    on = parse_rule("deny tcp from 203.0.113.7 on lab1")
    assert interfaces_line(book, [on], on) == (
        "Interfaces (only this one: on IFACE): lab1; the rules program is attached now to lab1."
    )


def test_the_dialog_says_whether_the_rule_outlives_ebpftop():
    assert "STAYS in the kernel (pinned), enforced, until its TTL of 15m runs out" in lifetime_line(
        parse_rule("deny from 192.0.2.1 ttl 15m")
    )
    assert "STAYS in the kernel (pinned), enforced, with no expiry, until deleted" in lifetime_line(
        parse_rule("deny from 192.0.2.1")
    )
    session = parse_rule("count from 192.0.2.1").with_(session=4242)
    assert lifetime_line(session).startswith("After ebpftop exits: removed")
    # a session's count rule that becomes a deny is no longer the session's
    assert switched(session, "deny").session == 0
    assert switched(session, "count").session == 4242
    assert "STAYS" in lifetime_line(switched(session, "deny"))


def test_the_rules_pane_says_what_a_change_is_doing_then_how_it_went():
    progress = ChangeProgress()
    told = []
    progress.listen(lambda: told.append(progress.state.ended is None))
    assert applying_text(progress.state) is None
    progress.begin("Add rule")
    progress.step("compiling and verifying the rules program (no rules were loaded: 5-8 s, once)")
    assert applying_text(progress.state).startswith("⟳ Add rule: compiling and verifying the rules program")
    progress.end(True)
    assert applying_text(progress.state).startswith("✔ Add rule: done in ")
    assert told == [True, False]


async def test_tracked_ends_the_change_when_it_fails():
    progress = ChangeProgress()

    async def boom() -> str:
        raise OSError("no such interface")

    with pytest.raises(OSError):
        await tracked("Add rule", boom, progress)()
    assert progress.state.ok is False
    assert applying_text(progress.state).startswith("✖ Add rule: failed after")


def test_the_canary_pane_offers_U_when_a_rollback_is_remembered():
    def text(state, key=True):
        return "".join(p if isinstance(p, str) else p[0] for p in rollout_parts(state, 80, key))

    state = RolloutState("checkout", "haproxy", "lb", canary_weight=0, stable_weight=100)
    assert "U: undo" not in text(state)
    remembered = RolloutState(
        "checkout", "haproxy", "lb", canary_weight=0, stable_weight=100, undo="canary weight 17"
    )
    assert "U: undo, set back canary weight 17" in text(remembered)
    assert "U: undo" not in text(remembered, key=False)  # read-only: no key to offer


def test_a_revision_named_after_its_track_is_said_once():
    def text(state):
        return "".join(p if isinstance(p, str) else p[0] for p in rollout_parts(state, 80))

    lab = RolloutState("checkout", "haproxy", "lb", stable_revision="stable", canary_revision="canary")
    assert "stable stable" not in text(lab) and "canary canary" not in text(lab)
    argo = RolloutState("checkout", "argo", "r", stable_revision="v1.0.0", canary_revision="v1.1.0")
    assert "stable v1.0.0" in text(argo) and "canary v1.1.0" in text(argo)


# --- end to end, real BPF ------------------------------------------------------------------------

PILOT_IN_NETNS = r"""
import asyncio, json, socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from textual.widgets import Input, Static

from ebpftop.collectors.flows.collector import FlowsCollector
from ebpftop.collectors.rules.collector import RulesCollector
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.flows.pane import FlowsPane
from ebpftop.tui.panes.rules.edit import RuleEditScreen
from ebpftop.tui.panes.table import LineTable
from ebpftop.tui.screens.confirm import ConfirmScreen

tmp, pin_dir, a_if, a_ip, b_ip, b_ns, python = sys.argv[2:9]
settings = Settings(audit_log=f"{tmp}/audit.jsonl", audit_key=f"{tmp}/audit.key", rules_pin_dir=pin_dir,
                    rules_state_dir=f"{tmp}/state", refresh=0.5)
flows = FlowsCollector([a_if], interval=0.5, tcp_events=False)
app = EbpftopApp(Runtime(settings, collectors=[flows, RulesCollector(settings)]))
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind((a_ip, 9))
rx.setblocking(False)
received = 0
out = {}

SEND = "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',40009))\n" \
       "for _ in range(int(sys.argv[2])): s.sendto(b'x'*10,(sys.argv[1],9))"

def send(n):
    subprocess.run(["ip", "netns", "exec", b_ns, python, "-c", SEND, a_ip, str(n)], check=True, timeout=60)

def drain():
    global received
    while True:
        try:
            rx.recv(100)
        except BlockingIOError:
            return received
        received += 1

def rules():
    snap = app.runtime.store.latest("rules")
    return list(snap.data.rules) if snap is not None and snap.data is not None else []

async def until(pilot, cond, what):
    end = time.monotonic() + 120  # bounded by time, not by pauses: a loaded machine stretches each pause
    while time.monotonic() < end:
        await pilot.pause(0.05)
        drain()
        if cond():
            return
    flows_health = app.runtime.store.latest("flows")
    raise SystemExit(f"gave up waiting for {what}; screen {app.screen!r}; rules {rules()!r}; "
                     f"flows {flows_health and flows_health.health!r}")

async def the_flow(pilot):
    await pilot.press("1")
    pane = app.query_one(FlowsPane)
    def row():
        return next((i for i, r in enumerate(pane.records)
                     if getattr(r, "dport", None) == 9 and getattr(r, "src", None) == b_ip), None)
    last = 0.0
    def seen():
        nonlocal last
        if row() is not None:
            return True
        if time.monotonic() - last > 1:  # the flows program attaches after the first frame
            send(1)
            last = time.monotonic()
        return False
    await until(pilot, seen, "the flow in the Flows pane")
    pane.query_one(LineTable).move_cursor(row())
    await pilot.pause()

async def confirm(pilot, what):
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what)
    said = app.screen.action.description
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the change")
    await app.workers.wait_for_complete()
    return said

async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        await the_flow(pilot)
        # r: the editor, prefilled with the flow's count rule
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RuleEditScreen), "the editor")
        out["count_text"] = app.screen.query_one(Input).value
        out["note"] = str(app.screen.query_one("#rule-origin", Static).render())
        shown = lambda: str(app.screen.query_one("#rule-preview", Static).render())
        await until(pilot, lambda: "would count" in shown(), "the preview")
        out["preview"] = shown()
        out["count_dialog"] = await confirm(pilot, "the count confirmation")
        await until(pilot, lambda: len(rules()) == 1, "the count rule")
        await pilot.press("2")
        base = drain()
        send(5)
        await until(pilot, lambda: rules()[0].packets == 5 and received == base + 5, "5 packets counted")
        out["counted"] = [rules()[0].packets, received - base]
        # r again, ctrl+t: a deny with a TTL (3 s here, so the test sees it run out)
        await the_flow(pilot)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RuleEditScreen), "the editor again")
        await pilot.press("ctrl+t")
        await pilot.pause()
        field = app.screen.query_one(Input)
        out["deny_text"] = field.value
        field.value = field.value.replace("ttl 15m", "ttl 3s")
        await pilot.pause()
        out["deny_dialog"] = await confirm(pilot, "the deny confirmation")
        await until(pilot, lambda: len(rules()) == 2 and rules()[0].action == "deny", "the deny rule first")
        base = drain()
        send(4)
        await until(pilot, lambda: rules()[0].packets == 4, "4 packets dropped")
        out["dropped"] = [rules()[0].packets, rules()[1].packets, drain() - base]
        # The TTL runs out in the kernel: nothing in ebpftop changes the rules meanwhile.
        gen = app.runtime.store.latest("rules").data.generation
        await until(pilot, lambda: rules()[0].expired, "the deny rule expired")
        base = drain()
        send(2)
        await until(pilot, lambda: received == base + 2, "the packets pass again")
        await until(pilot, lambda: rules()[1].packets == 7, "counted by the count rule again")
        out["expired"] = [rules()[0].packets, rules()[1].packets, received - base,
                          app.runtime.store.latest("rules").data.generation == gen]
        out["events"] = [(json.loads(l)["event"], json.loads(l)["action"]["kind"])
                         for l in open(f"{tmp}/audit.jsonl")]

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.integration
def test_flow_to_count_to_deny_with_a_ttl_that_runs_out_in_the_kernel(tmp_path):
    """Namespace A runs the dashboard (flows and rules on A's veth), B sends UDP to A:
    `r` on the flow adds its count rule (counts exactly what B sends, all received);
    `r`, ctrl+t adds a deny with a TTL first (dialog: the interface, stays after exit,
    until the TTL), which drops what B sends; once the TTL has passed, with no change
    made, the packets pass again and the count rule counts them."""
    import os
    import secrets
    import shutil
    import subprocess
    from pathlib import Path

    from conftest import need_root
    from netns import PYTHON, veth_pair

    need_root()
    pin_dir = f"/sys/fs/bpf/ebpftop-test-{secrets.token_hex(4)}/rules"
    env = dict(os.environ)
    env.pop("CI", None)
    try:
        with veth_pair("ebfr") as net:
            p = subprocess.run(
                [
                    "nsenter",
                    f"--net=/run/netns/{net.a.name}",
                    PYTHON,
                    "-c",
                    PILOT_IN_NETNS,
                    str(Path(__file__).parent),
                    str(tmp_path),
                    pin_dir,
                    net.a_if,
                    net.a_ip4,
                    net.b_ip4,
                    net.b.name,
                    PYTHON,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
            )
            assert p.returncode == 0, p.stderr[-3000:]
            out = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        from ebpftop.collectors.rules.ruleset import RuleBook

        book = RuleBook(pin_dir, str(tmp_path / "state"))
        book.dp.remove()
        book.state.remove()
        shutil.rmtree(os.path.dirname(pin_dir), ignore_errors=True)
    a, b, iface = net.a_ip4, net.b_ip4, net.a_if
    assert out["count_text"] == f"count udp from {b} to {a} port 9 on {iface} in"
    assert f"From the connection {b}:40009 -> {a}:9" in out["note"]
    assert "This count would count 1 recent flow" in out["preview"]
    assert (
        f"Interfaces (only this one: on IFACE): {iface}; the rules program is attached now to {iface}."
        in (out["count_dialog"])
    )
    assert "After ebpftop exits: removed (a count rule of this dashboard session" in out["count_dialog"]
    assert out["counted"] == [5, 5]
    assert out["deny_text"] == f"deny udp from {b}/32 to {a}/32 port 9 on {iface} in ttl 15m"
    deny = out["deny_dialog"]
    assert deny.startswith(f"Add rule: deny udp from {b}/32 to {a}/32 port 9 on {iface} in ttl 3s")
    assert f"Interfaces (only this one: on IFACE): {iface}." in deny  # attached already
    assert "it STAYS in the kernel (pinned), enforced, until its TTL of 3s runs out" in deny
    assert "It goes first (highest priority)" in deny
    assert out["dropped"] == [4, 5, 0]
    assert out["expired"] == [4, 7, 2, True]
    assert out["events"] == [["intent", "rules.add"], ["result", "rules.add"]] * 2


# --- the keys, with Pilot (no root: the rule book is a list) ---------------------------------


@pytest.fixture
def book(monkeypatch):
    """The rules enforced (a list), behind the real plan/gate path of actions.rules."""
    from ebpftop.actions import rules as rule_actions
    from ebpftop.collectors.rules.ruleset import Applied, Current, RuleBook

    enforced: list = []

    class ListBook(RuleBook):
        def __init__(self) -> None:  # no Datapath, no state dir
            self.progress = lambda _step: None

        @classmethod
        def from_settings(cls, settings):
            return cls()

        def close(self) -> None:
            pass

        def read(self) -> Current:
            return Current(list(enforced), 1, len(enforced) + 1)

        def attached_ifaces(self) -> list[str]:
            return ["eth0"]

        def targets(self, rules) -> list[str]:
            return ["eth0", "lab0"]

        def apply(self, change, author: str = "") -> Applied:
            before = list(enforced)
            after = [r if r.id else r.with_(id=len(before) + 1, author=author) for r in change(before)]
            enforced[:] = after
            return Applied(before, after, [], [])

    monkeypatch.setattr(rule_actions, "RuleBook", ListBook)
    return enforced


def flows_snapshot(*flows: FlowRecord):
    from app_support import ok, snap

    from ebpftop.collectors.flows.model import FlowsData

    data = FlowsData(
        flows=tuple(flows),
        flows_tracked=len(flows),
        total_bytes=sum(f.bytes for f in flows),
        total_packets=sum(f.packets for f in flows),
        total_bps=None,
        total_pps=None,
        evictions=0,
        update_failures=0,
        not_ip_packets=0,
        truncated_packets=0,
        events_total=None,
        lost_events=None,
        tcp_events_error=None,
    )
    return snap("flows", data, ok(NOW - 1), seq=1, t=NOW - 1)


async def until(pilot, cond, what: str):
    import time

    end = time.monotonic() + 30
    while time.monotonic() < end:
        await pilot.pause(0.02)
        if cond():
            return
    raise AssertionError(f"gave up waiting for {what}")


async def test_r_on_a_flow_opens_the_editor_and_ctrl_t_adds_a_deny_first_through_the_gate(tmp_path, book):
    from app_support import make_app
    from textual.widgets import Input, Static

    from ebpftop.tui.panes.rules.edit import RuleEditScreen
    from ebpftop.tui.screens.confirm import ConfirmScreen

    book.append(parse_rule("allow tcp from 203.0.113.0/24").with_(id=1, slot=0))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(flows_snapshot(conn()))
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RuleEditScreen), "the editor")
        field = app.screen.query_one(Input)
        assert field.value == "count tcp from 203.0.113.7 to 10.0.0.2 port 6379 on eth0 in"
        # the allow rule ahead takes these packets: the preview says so
        preview_text = str(app.screen.query_one("#rule-preview", Static).render())
        assert "(rule 1 matches them first)" in preview_text
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert field.value == "deny tcp from 203.0.113.7/32 to 10.0.0.2/32 port 6379 on eth0 in ttl 15m"
        assert "would drop 1 recent flow (20 packets" in str(
            app.screen.query_one("#rule-preview", Static).render()
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        said = app.screen.action.description
        assert app.screen.has_class("-dangerous")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert "Interfaces (only this one: on IFACE): eth0." in said
    assert "it STAYS in the kernel (pinned), enforced, until its TTL of 15m runs out" in said
    assert "It goes first (highest priority). This deny would drop 1 recent flow" in said
    assert [r.action for r in book] == ["deny", "allow"]  # first: the allow no longer takes them
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["event"], e["action"]["kind"]) for e in entries] == [
        ("intent", "rules.add"),
        ("result", "rules.add"),
    ]


async def test_r_in_a_flows_detail_is_the_rule_for_its_remote(tmp_path, book):
    from app_support import make_app
    from textual.widgets import Input

    from ebpftop.tui.panes.flows.detail import FlowDetailScreen
    from ebpftop.tui.panes.rules.edit import RuleEditScreen

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(flows_snapshot(conn()))
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FlowDetailScreen), "the detail")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RuleEditScreen), "the editor")
        assert app.screen.query_one(Input).value == "count from 203.0.113.7 on eth0 in"
        await pilot.press("escape")
        await app.workers.wait_for_complete()
    assert book == []  # escaped: nothing added


async def test_kiosk_r_is_absent_and_inert(tmp_path, book):
    from app_support import make_app

    from ebpftop.tui.panes.rules.edit import RuleEditScreen

    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(flows_snapshot(conn()))
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert not isinstance(app.screen, RuleEditScreen)
        assert not any(b.binding.action == "flow_rule" for b in app.active_bindings.values())
    assert book == []


async def test_the_rules_pane_shows_the_change_in_flight_instead_of_no_rules(tmp_path, book, monkeypatch):
    import threading

    from app_support import make_app, ok, rules_data, snap
    from textual.widgets import Input, Static

    from ebpftop.actions import rules as rule_actions
    from ebpftop.tui.panes.rules.edit import RuleEditScreen
    from ebpftop.tui.screens.confirm import ConfirmScreen

    release = threading.Event()
    real = rule_actions.RuleBook.apply

    def slow_apply(self, change, author=""):
        self.progress("compiling and verifying the rules program (no rules were loaded: 5-8 s, once)")
        release.wait(60)
        return real(self, change, author)

    monkeypatch.setattr(rule_actions.RuleBook, "apply", slow_apply)
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(snap("rules", rules_data(0), ok(NOW - 1), seq=1, t=NOW - 1))
        await pilot.press("2")
        await pilot.pause()

        def keys() -> str:
            return str(app.query_one("#rules-keys", Static).render())

        assert keys().startswith("no rules")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, RuleEditScreen), "the editor")
        app.screen.query_one(Input).value = "count udp to any port 53"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("enter")
        try:
            await until(pilot, lambda: keys().startswith("⟳ Add rule: compiling and verifying"), "the step")
        finally:
            release.set()
        await app.workers.wait_for_complete()
        await until(pilot, lambda: keys().startswith("✔ Add rule: done in"), "done")
    assert [r.action for r in book] == ["count"]


def test_the_detail_line_says_the_lifetime_truly():
    from dataclasses import replace

    from app_support import rules_data

    from ebpftop.tui.panes.rules.view import lifetime_text

    rec = rules_data(1).rules[0]
    assert lifetime_text(replace(rec, session=True), NOW) == "expiry session"
    # a deny that was a session's count rule before the fix still carries the flag: not "session"
    deny = replace(rec, action="deny", text="deny tcp to any port 1000", session=True, expires=None)
    assert lifetime_text(deny, NOW) == "no expiry, stays after exit"
    assert lifetime_text(replace(deny, expires=NOW + 900), NOW) == "expiry in 15m"
    assert lifetime_text(replace(rec, expires=None), NOW) == "no expiry"


WARM_IN_NETNS = r"""
import json, socket, sys, time
from ebpftop.collectors.rules.ruleset import RuleBook
from ebpftop.collectors.rules.grammar import parse_rule

pin, state, a_if, b_ip = sys.argv[1:5]
book = RuleBook(pin, state)
steps = []
book.progress = steps.append
out = {"warm": book.dp.warm(), "pinned_before": book.dp.loaded(), "again": book.dp.warm()}
book.add(parse_rule(f"count udp to {b_ip} port 9 on {a_if} out"), "test")
out["steps"] = steps
out["warm_after"] = book.dp.is_warm()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x" * 10, (b_ip, 9))
end = time.monotonic() + 60
while time.monotonic() < end:
    _, counts = book.read_counted()
    if counts and next(iter(counts.values()))[0] == 3:
        break
    time.sleep(0.05)
out["counted"] = next(iter(book.read_counted()[1].values()))[0]
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.integration
def test_a_change_pins_the_copy_compiled_ahead_and_it_counts(tmp_path):
    """`Datapath.warm` compiles and verifies the program pinned nowhere; the first change
    pins that copy instead of compiling (its step says so) and the program counts."""
    import os
    import secrets
    import shutil

    from conftest import need_root
    from netns import PYTHON, veth_pair

    need_root()
    pin_dir = f"/sys/fs/bpf/ebpftop-test-{secrets.token_hex(4)}/rules"
    try:
        with veth_pair("ebwm") as net:
            p = net.a.run(
                PYTHON,
                "-c",
                WARM_IN_NETNS,
                pin_dir,
                str(tmp_path / "state"),
                net.a_if,
                net.b_ip4,
                timeout=300,
                bpf=True,
            )
            out = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        from ebpftop.collectors.rules.ruleset import RuleBook

        book = RuleBook(pin_dir, str(tmp_path / "state"))
        book.dp.remove()
        book.state.remove()
        shutil.rmtree(os.path.dirname(pin_dir), ignore_errors=True)
    assert (out["warm"], out["pinned_before"], out["again"]) == (True, False, False)
    assert "pinning the rules program compiled in advance" in out["steps"]
    assert not any(s.startswith("compiling") for s in out["steps"])
    assert out["warm_after"] is False  # the pins hold it now
    assert out["counted"] == 3
