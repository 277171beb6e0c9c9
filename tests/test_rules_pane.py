"""The Rules pane (Pilot, no root): the table with counters, rate and enforced flag; `a`
with a bad rule shows the parser's column and applies nothing; a good rule shows the
preview from the recent flows and goes through the gate (audited); `t` to deny states
the traffic it will drop; `d` deletes; `e` edits as one switch; kiosk: keys absent and
inert; 80x24 and 160x48.

The kernel side is a `RuleBook` whose datapath is a list (`FakeBook`): the change
logic (add/delete/set_action/replace) and the gate actions (`actions.rules.
plan`) are the real ones; what needs root (pins, bpf maps) is replaced.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
from app_support import NOW, make_app, ok, screen_text, snap
from textual.widgets import Input, Static

from ebpftop.actions import rules as rule_actions
from ebpftop.collectors.flows.model import FlowRecord, FlowsData
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.collectors.rules.ruleset import Applied, Current, RuleBook
from ebpftop.collectors.rules.spec import Rule, format_rule
from ebpftop.tui.panes.rules.edit import RuleEditScreen
from ebpftop.tui.panes.rules.pane import RulesPane
from ebpftop.tui.panes.table import LineTable
from ebpftop.tui.screens.confirm import ConfirmScreen

HOSTILE = "ops\x1b]0;pwned\x07@10.9.9.9"


@dataclass
class Kernel:
    """What the fake datapath enforces, and the counters it reports."""

    rules: list[Rule] = field(default_factory=list)
    gen: int = 0
    next_id: int = 1
    counters: dict[int, tuple[int, int, float | None, float | None, tuple]] = field(default_factory=dict)
    applied: int = 0  # switches made

    def data(self) -> RulesData:
        recs = []
        for pos, r in enumerate(self.rules):
            packets, nbytes, last, pps, hist = self.counters.get(r.id, (0, 0, None, None, ()))
            recs.append(
                RuleRecord(
                    id=r.id,
                    position=pos,
                    action=r.action,
                    text=format_rule(r),
                    packets=packets,
                    bytes=nbytes,
                    pps=pps,
                    bps=None if pps is None else pps * 100,
                    last_hit=last,
                    author=r.author,
                    created=r.created,
                    expires=r.expires,
                    expired=False,
                    comment=r.comment,
                    session=bool(r.session),
                    history=hist,
                )
            )
        enforcing = sum(1 for r in recs if r.action != "count")
        return RulesData(tuple(recs), enforcing, ("eth0 ingress", "eth0 egress"), self.gen, 256)


@pytest.fixture
def kernel(monkeypatch) -> Kernel:
    k = Kernel()

    class FakeBook(RuleBook):
        def __init__(self) -> None:  # no Datapath, no state dir
            pass

        @classmethod
        def from_settings(cls, settings):
            return cls()

        def close(self) -> None:
            pass

        def read(self) -> Current:
            return Current(list(k.rules), k.gen, k.next_id)

        def apply(self, change, author: str = "") -> Applied:
            before = list(k.rules)
            out = []
            for r in change(list(k.rules)):
                if not r.id:
                    r = r.with_(
                        id=k.next_id,
                        slot=k.next_id,
                        author=r.author or author,
                        created=NOW,
                        expires=NOW + r.ttl if r.ttl else None,
                    )
                    k.next_id += 1
                out.append(r)
            k.rules, k.gen, k.applied = out, k.gen + 1, k.applied + 1
            return Applied(before, out, [], [])

    monkeypatch.setattr(rule_actions, "RuleBook", FakeBook)
    return k


def seed(k: Kernel, *texts: str) -> None:
    for text in texts:
        r = parse_rule(text)
        k.rules.append(
            r.with_(
                id=k.next_id,
                slot=k.next_id,
                author=HOSTILE if "6379" in text else "alice@10.0.0.1",
                created=NOW - 600,
                expires=NOW + r.ttl if r.ttl else None,
            )
        )
        k.next_id += 1
    k.gen += 1


def flow(src="203.0.113.7", dport=6379, proto="tcp", packets=40, nbytes=52000) -> FlowRecord:
    return FlowRecord(
        iface="eth0",
        direction="ingress",
        proto=proto,
        src=src,
        sport=41000,
        dst="10.0.0.2",
        dport=dport,
        packets=packets,
        bytes=nbytes,
        bps=None,
        pps=None,
        first_seen=NOW - 30,
        last_seen=NOW - 1,
    )


def flows_data(*flows: FlowRecord) -> FlowsData:
    return FlowsData(
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


_seq = iter(range(1, 1_000_000))


async def publish(pilot, app, k: Kernel) -> RulesPane:
    app.runtime.bus.publish(snap("rules", k.data(), ok(NOW - 1), seq=next(_seq), t=NOW - 1))
    await pilot.pause()
    return app.query_one(RulesPane)


async def show(pilot, app, k: Kernel, *flows: FlowRecord) -> RulesPane:
    if flows:
        app.runtime.bus.publish(snap("flows", flows_data(*flows), ok(NOW - 1), seq=next(_seq), t=NOW - 1))
    pane = await publish(pilot, app, k)
    await pilot.press("2")  # at 80 columns only the focused pane has a body
    await pilot.pause()
    return pane


def rows(app) -> list[list[str]]:
    """Every rule's row (built here: the table builds only its window)."""
    table = app.query_one("#rules-table", LineTable)
    return [[text.strip() for text, _style in table.row(i).cells] for i in range(table.count)]


def column_labels(app) -> list[str]:
    return [c.label for c in app.query_one("#rules-table", LineTable).columns]


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def audit_entries(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def type_rule(pilot, app, text: str) -> RuleEditScreen:
    await pilot.press("a")
    await pilot.pause()
    editor = app.screen
    assert isinstance(editor, RuleEditScreen)
    editor.query_one(Input).value = text
    await pilot.pause()
    return editor


async def until_confirm(pilot, app) -> ConfirmScreen:
    """The confirmation the change leads to (planning reads the rule set in a thread)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        await pilot.pause(0.02)
        if isinstance(app.screen, ConfirmScreen):
            return app.screen
    raise AssertionError(f"no confirmation screen; the screen is {app.screen!r}")


async def confirm(pilot, app) -> None:
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


# --- the table -----------------------------------------------------------------------------


async def test_table_renders_counters_rate_and_the_enforced_flag(tmp_path, kernel):
    seed(
        kernel,
        'deny tcp from 203.0.113.0/24 to any port 6379 on eth0 in ttl 15m "scraper"',
        "count udp from any port 53 out",
    )
    kernel.counters = {1: (12345, 9_000_000, NOW - 2, 41.0, (1.0, 5.0, 41.0)), 2: (7, 700, None, None, ())}
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, kernel)
        got = rows(app)
        assert column_labels(app) == ["id", "action", "match", "packets", "bytes", "rate", "last hit"]
        assert got[0][:2] == ["1", "◆ deny"]  # enforced: stays after exit
        assert got[0][2].startswith("tcp from 203.0.113.0/24") and got[0][2].endswith("…")  # cut at 80
        detail = text_of(app, "#rules-detail")  # ... and the selected rule in full below
        assert 'deny tcp from 203.0.113.0/24 to any port 6379 on eth0 in ttl 15m "scraper"' in detail
        assert "#1 id 1  rate ▁▂█" in detail and "expiry in 15m" in detail
        assert got[0][3:] == ["12.3k", "8.6 MiB", "41/s", "2s ago"]
        assert got[1][:2] == ["2", "count"]
        assert got[1][3:] == ["7", "700 B", "—", "never"]  # no rate yet is not 0
        assert "2/256 rules" in text_of(app, "#rules-summary")
        assert "◆ 1 stay enforced after exit  on eth0 in+out" in text_of(app, "#rules-summary")
        assert "a: add  e: edit  d: delete  t: count/deny" in text_of(app, "#rules-keys")
        assert "12.3k" in screen_text(app)


async def test_160x48_grid_pane_shows_the_selected_rules_history_and_author_below(tmp_path, kernel):
    seed(
        kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 ttl 15m "scraper"', "allow tcp to any port 22"
    )
    kernel.counters = {1: (100, 1000, NOW - 1, 3.0, (0.0, 1.0, 2.0, 3.0))}
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show(pilot, app, kernel)
        assert pane.region.width < 100  # a quarter of the screen
        assert column_labels(app)[-1] == "last hit"
        detail = text_of(app, "#rules-detail")
        assert "rate ▁▄▅█" in detail or "rate ▁" in detail
        assert "\\x1b" in detail and "\x1b" not in detail  # the hostile author, escaped
        assert "\x1b]0;" not in screen_text(app)


async def test_wide_pane_shows_sparkline_expiry_and_cleaned_author(tmp_path, kernel):
    seed(
        kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 ttl 15m "scraper"', "allow tcp to any port 22"
    )
    kernel.counters = {1: (100, 1000, NOW - 1, 3.0, (0.0, 1.0, 2.0, 3.0))}
    app = make_app(tmp_path)
    async with app.run_test(size=(119, 30)) as pilot:  # stacked panes: the focused one is full width
        await show(pilot, app, kernel)
        assert column_labels(app)[0] == "#"
        assert column_labels(app)[-3:] == ["rate history", "expiry", "author"]
        first = rows(app)[0]
        assert first[-3].startswith("▁") and first[-3].rstrip().endswith("█")
        assert first[-2] == "in 15m"
        assert "\x1b" not in first[-1] and "\\x1b" in first[-1]  # escaped, never interpreted
        assert rows(app)[1][-2] == "—"  # no TTL
        assert "\x1b]0;" not in screen_text(app)


async def test_a_payload_of_another_shape_is_not_drawn(tmp_path, kernel):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.runtime.bus.publish(snap("rules", {"rules": [1, 2]}))
        await pilot.press("2")
        await pilot.pause()
        pane = app.query_one(RulesPane)
        assert pane.has_class("-nodata") and pane.data is None and pane.rows == []
        assert "Cannot display this data: TypeError: expected rules data, got dict" in screen_text(app)
        await publish(pilot, app, kernel)
        assert not pane.has_class("-nodata") and "0/256 rules" in text_of(app, "#rules-summary")


# --- a: add --------------------------------------------------------------------------------


async def test_add_with_a_bad_rule_shows_the_column_and_applies_nothing(tmp_path, kernel):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, kernel)
        editor = await type_rule(pilot, app, "deny tcp from 10.0.0.1/24 to any port 22")
        status = text_of(app, "#rule-status")
        assert editor.error is not None and editor.error.col == 15
        assert "column 15: '10.0.0.1/24': host bits set" in status
        lines = status.splitlines()
        assert lines[-1].index("^") == lines[-2].index("10.0.0.1/24")  # the caret is under the term
        # As you type: fixing it clears the error.
        editor.query_one(Input).value = "deny tcp from 10.0.0.0/24 to any port 22"
        await pilot.pause()
        assert editor.error is None and "valid" in text_of(app, "#rule-status")
        editor.query_one(Input).value = "deny tcp to any port 70000"
        await pilot.pause()
        await pilot.press("enter")  # refused by the editor: still open, nothing planned
        await pilot.pause()
        assert app.screen is editor and "port out of range" in text_of(app, "#rule-status")
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        assert kernel.applied == 0 and kernel.rules == []
        assert audit_entries(tmp_path) == []


async def test_add_previews_the_recent_flows_and_goes_through_the_gate(tmp_path, kernel):
    seed(kernel, "count icmp")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, kernel, flow(), flow(src="198.51.100.9", dport=443), flow(src="203.0.113.8"))
        editor = await type_rule(pilot, app, 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"')
        preview = text_of(app, "#rule-preview")
        assert "It DROPS tcp packets from 203.0.113.0/24" in preview
        assert "would drop 2 recent flows (80 packets, 104000 bytes)" in preview
        assert "198.51.100.9" not in preview
        assert kernel.applied == 0  # a preview changes nothing
        await pilot.press("enter")
        dialog = await until_confirm(pilot, app)
        assert dialog is not editor
        said = dialog.action.description
        assert said.startswith('Add rule: deny tcp from 203.0.113.0/24 to any port 6379 "scraper"')
        assert "would drop 2 recent flows" in said and dialog.action.dangerous
        await confirm(pilot, app)
        assert [format_rule(r) for r in kernel.rules][
            -1
        ] == 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"'
        entries = audit_entries(tmp_path)
        assert [e["event"] for e in entries] == ["intent", "result"]
        assert entries[0]["action"]["kind"] == "rules.add"
        assert "would drop 2 recent flows" in entries[0]["action"]["description"]
        assert entries[1]["ok"] is True and "2 rules enforced" in entries[1]["message"]
        pane = await publish(pilot, app, kernel)  # the collector's next reading
        assert rows(app)[1][1] == "◆ deny" and len(pane.rows) == 2


async def test_add_count_rule_is_session_scoped_and_cancel_changes_nothing(tmp_path, kernel):
    import os

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, kernel)
        await type_rule(pilot, app, "count udp to any port 53")
        assert "No recent flows to preview against" in text_of(app, "#rule-preview")
        await pilot.press("enter")
        await until_confirm(pilot, app)
        await pilot.press("escape")  # declined at the confirmation
        await app.workers.wait_for_complete()
        assert kernel.applied == 0
        assert [e["event"] for e in audit_entries(tmp_path)] == ["cancelled"]
        await type_rule(pilot, app, "count udp to any port 53")
        await pilot.press("enter")
        await until_confirm(pilot, app)
        await confirm(pilot, app)
        assert kernel.rules[0].session == os.getpid()


# --- t, d, e on the selected rule ----------------------------------------------------------


async def test_toggle_to_deny_states_the_traffic_it_will_drop(tmp_path, kernel):
    seed(kernel, "allow tcp from 203.0.113.8", "count tcp to any port 6379")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, kernel, flow(), flow(src="203.0.113.8"), flow(dport=22))
        await pilot.press("down")
        assert pane.selected().id == 2
        await pilot.press("t")
        dialog = await until_confirm(pilot, app)
        assert dialog.action.dangerous
        said = dialog.action.description
        assert said.startswith("Rule 2: count tcp to any port 6379\nbecomes deny: it DROPS tcp packets")
        # The earlier allow takes 203.0.113.8's flow first, as in the kernel.
        assert (
            "would drop 1 recent flow (40 packets, 52000 bytes): tcp 203.0.113.7:41000 -> 10.0.0.2:6379"
            in said
        )
        await confirm(pilot, app)
        assert [r.action for r in kernel.rules] == ["allow", "deny"]
        entries = audit_entries(tmp_path)
        assert entries[0]["action"]["kind"] == "rules.action"
        assert entries[0]["action"]["params"] == {"id": 2, "action": "deny"}
        await publish(pilot, app, kernel)
        await pilot.press("t")  # back to count
        assert "becomes count" in (await until_confirm(pilot, app)).action.description
        await confirm(pilot, app)
        assert [r.action for r in kernel.rules] == ["allow", "count"]
        await publish(pilot, app, kernel)
        await pilot.press("up", "t")  # an allow has no count/deny counterpart: nothing asked
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and kernel.applied == 2


async def test_delete_removes_the_selected_rule(tmp_path, kernel):
    seed(kernel, "deny tcp to any port 23", "count icmp")
    kernel.counters = {1: (5, 300, NOW - 5, 0.0, ())}
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, kernel)
        await pilot.press("d")
        said = (await until_confirm(pilot, app)).action.description
        assert "1: deny tcp to any port 23" in said and "Traffic it drops now passes again" in said
        await confirm(pilot, app)
        assert [r.id for r in kernel.rules] == [2]
        assert audit_entries(tmp_path)[0]["action"]["params"] == {"ids": [1]}
        await publish(pilot, app, kernel)
        assert [r[0] for r in rows(app)] == ["2"]


async def test_edit_replaces_one_rule_in_place_and_keeps_the_others(tmp_path, kernel):
    seed(kernel, "allow tcp to any port 22 ttl 1h", "count tcp to any port 8080", "deny udp to any port 53")
    untouched = {r.id: r for r in kernel.rules if r.id != 2}
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, kernel, flow(dport=8080))
        await pilot.press("down", "e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, RuleEditScreen)
        assert editor.query_one(Input).value == "count tcp to any port 8080"
        editor.query_one(Input).value = "deny tcp to any port 8080-8081"
        await pilot.pause()
        assert "would drop 1 recent flow" in text_of(app, "#rule-preview")
        await pilot.press("enter")
        action = (await until_confirm(pilot, app)).action
        assert action.kind == "rules.edit" and action.dangerous
        assert "was: count tcp to any port 8080\n  now: deny tcp to any port 8080-8081" in action.description
        await confirm(pilot, app)
        assert kernel.applied == 1  # one switch
        assert [format_rule(r, with_ttl=False) for r in kernel.rules] == [
            "allow tcp to any port 22",
            "deny tcp to any port 8080-8081",
            "deny udp to any port 53",
        ]
        for r in kernel.rules:
            if r.id in untouched:  # same id, slot and expiry: counters and TTL untouched
                old = untouched[r.id]
                assert (r.slot, r.expires, r.ttl) == (old.slot, old.expires, old.ttl)
        assert audit_entries(tmp_path)[0]["action"]["params"]["new"] == "deny tcp to any port 8080-8081"
        assert pane.data is not None


# --- kiosk ---------------------------------------------------------------------------------


async def test_kiosk_keys_are_absent_and_inert(tmp_path, kernel):
    seed(kernel, "count tcp to any port 6379")
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, kernel)
        for action in ("add_rule", "edit_rule", "delete_rule", "toggle_rule"):
            assert pane.check_action(action, ()) is False
        active = {b.binding.action for b in app.active_bindings.values()}
        assert not active & {"add_rule", "edit_rule", "delete_rule", "toggle_rule"}
        assert "a: add" not in text_of(app, "#rules-keys")
        from ebpftop.tui.screens.help import pane_rows

        listed = {keys.strip(): note for keys, _text, note in pane_rows(app)}
        assert all(listed[k] == "disabled: read-only" for k in ("a", "e", "d", "t"))
        for key in ("a", "e", "d", "t"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app._main_screen
        # Called directly anyway: refused, and the refusal audited by the read-only gate.
        pane.action_toggle_rule()
        await app.workers.wait_for_complete()
        assert kernel.applied == 0
        assert [e["event"] for e in audit_entries(tmp_path)] == ["refused"]


async def test_keys_only_act_when_the_rules_pane_has_the_focus(tmp_path, kernel):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await publish(pilot, app, kernel)
        await pilot.press("1", "a")  # the Flows pane has the focus
        await pilot.pause()
        assert not isinstance(app.screen, RuleEditScreen)
        await pilot.press("2", "a")
        await pilot.pause()
        assert isinstance(app.screen, RuleEditScreen)
        await pilot.press("escape")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_sizes_fit_the_table(tmp_path, kernel, size):
    seed(kernel, *[f"count tcp to any port {1000 + i}" for i in range(30)])
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        pane = await show(pilot, app, kernel)
        table = app.query_one("#rules-table", LineTable)
        assert table.region.height >= 3 and table.region.right <= pane.region.right
        assert sum(c.width + 1 for c in table.columns) < table.size.width  # no horizontal scroll
        await type_rule(pilot, app, "deny tcp from 10.0.0.1/24")
        status = app.screen.query_one("#rule-status", Static)
        assert status.region.bottom <= size[1] and "host bits set" in text_of(app, "#rule-status")


# --- the real datapath (root) --------------------------------------------------------------

PILOT_IN_NETNS = r"""
import asyncio, json, socket, sys
sys.path.insert(0, sys.argv[1])
from textual.widgets import Input
from ebpftop.collectors.rules.collector import RulesCollector
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.rules.pane import RulesPane
from ebpftop.tui.screens.confirm import ConfirmScreen

tmp, pin_dir, a_if, b_ip = sys.argv[2:6]
settings = Settings(audit_log=f"{tmp}/audit.jsonl", audit_key=f"{tmp}/audit.key", rules_pin_dir=pin_dir,
                    rules_state_dir=f"{tmp}/state", refresh=0.2)
app = EbpftopApp(Runtime(settings, collectors=[RulesCollector(settings)]))
out = {}

async def until(pilot, cond, what):
    import time
    end = time.monotonic() + 90  # bounded by time, not by pauses: a loaded machine stretches each pause
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if cond():
            return
    raise SystemExit(f"gave up waiting for {what}; screen {app.screen!r}")

async def confirm_next(pilot, key):
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
    said = app.screen.action.description
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the change")
    await app.workers.wait_for_complete()
    return said

async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(RulesPane)
        await pilot.press("2")  # at 80x24 a pane draws its body only when shown
        await until(pilot, lambda: pane.data is not None, "the rules source")
        await pilot.press("a")
        await until(pilot, lambda: app.screen.query(Input), "the editor")
        app.screen.query_one(Input).value = f'count udp to {b_ip} port 9 on {a_if} out "pane"'
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the add confirmation")
        out["add"] = app.screen.action.description
        await pilot.press("enter")
        await until(pilot, lambda: pane.rows, "the rule in the pane")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(5):
            s.sendto(b"x" * 10, (b_ip, 9))
        await until(pilot, lambda: pane.rows and pane.rows[0].packets == 5, "5 packets counted")
        out["counted"] = [pane.rows[0].packets, pane.rows[0].bytes]
        out["toggle"] = await confirm_next(pilot, "t")
        await until(pilot, lambda: pane.rows and pane.rows[0].action == "deny", "deny shown")
        try:
            s.sendto(b"x" * 10, (b_ip, 9))
        except OSError as exc:  # a TC drop on egress may surface as an error
            out["send_error"] = type(exc).__name__
        await until(pilot, lambda: pane.rows and pane.rows[0].packets == 6, "the dropped packet counted")
        out["after_deny"] = [pane.rows[0].action, pane.rows[0].packets]
        out["delete"] = await confirm_next(pilot, "d")
        await until(pilot, lambda: pane.data is not None and not pane.data.rules, "no rules")
        out["events"] = [json.loads(l)["event"] for l in open(f"{tmp}/audit.jsonl")]

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.integration
def test_real_datapath_add_count_toggle_deny_delete(tmp_path):
    """In namespace A of a veth pair made here: `a` adds a count rule on A's veth through
    the pane, it counts exactly the 5 datagrams sent, `t` makes it deny (confirmation
    says it drops), the next datagram is dropped and counted, `d` removes it."""
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
        with veth_pair("ebrp") as net:
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
                    net.b_ip4,
                ],
                capture_output=True,
                text=True,
                timeout=300,
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
    assert out["add"].startswith(f'Add rule: count udp to {net.b_ip4}/32 port 9 on {net.a_if} out "pane"')
    assert out["counted"] == [5, 5 * (14 + 20 + 8 + 10)]
    assert "becomes deny: it DROPS udp packets" in out["toggle"]
    assert out["after_deny"] == ["deny", 6]
    assert "Delete:" in out["delete"]
    assert out["events"] == ["intent", "result"] * 3


# --- rules that outlive the dashboard: said at start, asked about at quit -----------


async def test_start_says_which_rules_enforce_from_before(tmp_path, kernel):
    seed(kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"', "count udp to any port 53")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await publish(pilot, app, kernel)
        notes = [str(n.message) for n in app._notifications]
        assert any("scraper" in n and "6379" in n for n in notes), notes
        assert not any("port 53" in n for n in notes)  # count rules do not outlive the session


async def test_quit_with_enforced_rules_asks_keep_remove_or_stay(tmp_path, kernel):
    from ebpftop.tui.screens.quit_rules import QuitRulesScreen

    seed(kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"')
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await publish(pilot, app, kernel)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitRulesScreen)
        assert "scraper" in screen_text(app)
        await pilot.press("escape")  # stay
        await pilot.pause()
        assert not isinstance(app.screen, QuitRulesScreen) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("k")  # keep and quit
        await pilot.pause()
    assert not app.is_running
    assert [r.action for r in kernel.rules] == ["deny"]  # kept: still enforcing


async def test_quit_and_remove_goes_through_the_gate(tmp_path, kernel):
    seed(kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"', "count udp to any port 53")
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await publish(pilot, app, kernel)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "6379" in screen_text(app)
        await pilot.press("y")
        await pilot.pause()
        await pilot.pause()
    assert not app.is_running
    assert [r.action for r in kernel.rules] == ["count"]  # the deny is gone, nothing else
    events = [json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events == ["intent", "result"]


async def test_kiosk_quits_without_asking(tmp_path, kernel):
    seed(kernel, 'deny tcp from 203.0.113.0/24 to any port 6379 "scraper"')
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await publish(pilot, app, kernel)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running
    assert [r.action for r in kernel.rules] == ["deny"]
