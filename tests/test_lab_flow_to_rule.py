"""From a flow to a rule on the lab's real traffic, end to end: the dashboard wired as
`ebpftop --lab-instance fr` (the flows and rules collectors of `default_collectors`,
BPF on the lab's links, the real gate and an audit log of the test's own), driven by
keys in a Pilot as an operator would: the load generator's connections to HAProxy in
Flows, `r`, a count rule (counted in the kernel's pinned maps); `r`, ctrl+t, a deny
with a 30 s TTL (the load generator's requests get no answer); then, with no key
pressed, the TTL runs out in the kernel and the requests succeed again.

The rule acts on the client's link only (`on ebt-fr-client`), never on the host's own
interfaces: the confirmation names that one interface and the pinned program is
attached nowhere else. Its own lab instance ("fr", subnet and Prometheus port) and
its own rules pin directory, so a developer's lab and rules are left alone. Every wait
is a poll with a generous bound, never a speed check.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from labs import running_lab

from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.spec import format_rule
from ebpftop.core.audit import verify
from ebpftop.lab import manager
from ebpftop.lab.layout import LabConfig, Layout

pytestmark = [pytest.mark.integration, pytest.mark.root]

CFG = LabConfig(name="fr", subnet="198.18.232.0/24", prometheus_port=19232)
EMPTY = str(Path(__file__).parent / "data" / "empty.toml")
TTL = 30  # seconds: long enough to see the requests fail, short enough to see it run out
DEADLINE = 120.0


@pytest.fixture(scope="module")
def lab():
    with running_lab(CFG) as layout:
        yield layout


@pytest.fixture
def pins(tmp_path):
    """A rules pin directory of this test's own; whatever is pinned there goes at the end
    (a deny outlives the dashboard by design)."""
    from ebpftop.collectors.rules.ruleset import RuleBook

    pin_dir = f"/sys/fs/bpf/ebpftop-test-{secrets.token_hex(4)}/rules"
    try:
        yield pin_dir
    finally:
        book = RuleBook(pin_dir, str(tmp_path / "rules-state"))
        book.dp.remove()
        book.state.remove()
        shutil.rmtree(os.path.dirname(pin_dir), ignore_errors=True)


def dashboard(tmp_path: Path, pin_dir: str):
    """The app as `ebpftop --lab-instance fr` builds it, with its flows and rules sources."""
    import dataclasses

    from ebpftop.cli import options
    from ebpftop.cli.main import build_parser
    from ebpftop.cli.wiring import dashboard_runtime
    from ebpftop.collectors.registry import default_collectors
    from ebpftop.tui.app import EbpftopApp

    args = build_parser().parse_args(
        ["--config", EMPTY, "--lab-instance", CFG.name, "--audit-log", str(tmp_path / "audit.jsonl")]
    )
    settings = dataclasses.replace(
        options.load_or_exit(args, lab=options.LAB_UP),
        audit_key=str(tmp_path / "audit.key"),
        rules_pin_dir=pin_dir,
        rules_state_dir=str(tmp_path / "rules-state"),
    )
    assert settings.ifaces == tuple(Layout(CFG).veth(p) for p in ("client", "lb", "stable", "canary"))
    chosen = [c for c in default_collectors(settings) if c.name in ("flows", "rules")]
    return EbpftopApp(dashboard_runtime(settings, chosen))


async def wait_for(pilot, ok, what: str, detail=lambda: "", seconds: float = DEADLINE) -> None:
    """Let the app run until `ok()` holds (a bound on waiting, not a speed check)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ok():
            return
        await pilot.pause(0.2)
    assert ok(), f"{what}: not within {seconds:g}s; {detail()}"


def loadgen(status: manager.LabStatus) -> manager.PartStatus:
    return next(p for p in status.parts if p.part == "loadgen")


async def lab_status(pilot, ok, what: str, seconds: float = DEADLINE) -> manager.PartStatus:
    """Poll `lab status` (in a thread: it asks the parts) until the load generator's line
    satisfies `ok`."""
    end = time.monotonic() + seconds
    part = loadgen(await asyncio.to_thread(manager.status, CFG))
    while not ok(part) and time.monotonic() < end:
        await pilot.pause(1.0)
        part = loadgen(await asyncio.to_thread(manager.status, CFG))
    assert ok(part), f"{what}: not within {seconds:g}s; last: {part.detail}"
    return part


async def test_a_lab_flow_to_a_count_then_a_deny_whose_ttl_runs_out_in_the_kernel(lab, pins, tmp_path):
    from textual.widgets import Input, Static

    from ebpftop.collectors.rules.ruleset import RuleBook
    from ebpftop.tui.panes.flows.filter import FlowFilterScreen
    from ebpftop.tui.panes.flows.pane import FlowsPane
    from ebpftop.tui.panes.rules.edit import RuleEditScreen
    from ebpftop.tui.screens.confirm import ConfirmScreen

    client = lab.addr("client")
    link = lab.veth("client")  # the load generator's link: root side of its veth
    app = dashboard(tmp_path, pins)
    said: dict[str, str] = {}

    def rules():
        snap = app.runtime.store.latest("rules")
        return snap.data if snap is not None and snap.data is not None else None

    def rule(i: int):
        data = rules()
        return data.rules[i] if data is not None and len(data.rules) > i else None

    async def the_load_generator(pilot) -> None:
        """Flows grouped by remote address, the cursor on the load generator's: its
        connections (to HAProxy's traffic port: the filter) seen arriving on its link.
        (Not a fold of ended connections: the same packet crosses the client's link and
        HAProxy's within one jiffy, either is taken as where the connection was first
        seen, and its owner follows from that: the load generator's connections are
        folded half under python3, half under haproxy, and a fold may span both links.)"""
        pane = app.query_one(FlowsPane)
        await pilot.press("1")
        for _ in range(8):
            if pane.grouping == "remote":
                break
            await pilot.press("g")
        assert pane.grouping == "remote"

        def row() -> int | None:
            return next((i for i, r in enumerate(pane.records) if r.group.key == client), None)

        for _ in range(5):  # the rows may move between reading them and the keys
            await wait_for(pilot, lambda: row() is not None, "the load generator's address in Flows")
            i = row()
            assert i is not None
            await pilot.press("home", *["down"] * i, *(["down", "up"] if i == 0 else []))
            sel = pane.selection()
            if sel is not None and (sel.by, sel.group) == ("remote", client):
                assert sel.title.startswith(f"remote {client}: ") and sel.title.endswith(
                    " matching port:8080"
                )
                return
        pytest.fail("could not place the cursor on the load generator's address")

    def toasts() -> list[str]:
        return [n.message for n in app._notifications]

    async def editor(pilot) -> Input:
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, RuleEditScreen),
            "the rule editor",
            lambda: f"screen {app.screen!r}, focus {app.focused!r}, toasts {toasts()}",
        )
        return app.screen.query_one(Input)

    async def confirm(pilot, what: str) -> str:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what)
        text = app.screen.action.description
        said[what + " dangerous"] = str(app.screen.has_class("-dangerous"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), f"{what}: applied")
        await app.workers.wait_for_complete()
        return text

    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("1", "slash")
        await wait_for(pilot, lambda: isinstance(app.screen, FlowFilterScreen), "the filter dialog")
        await pilot.press(*"port:8080", "enter")
        await the_load_generator(pilot)

        # r: the editor, prefilled with a count rule for them, on the client's link only
        field = await editor(pilot)
        text = f"count from {client} on {link} in"
        assert field.value == text
        note = str(app.screen.query_one("#rule-origin", Static).render())
        assert note.startswith(f"From remote {client}: ") and " flows matching port:8080: " in note, note
        assert note.endswith(f": every packet from {client} arriving on {link}."), note
        preview = lambda: str(app.screen.query_one("#rule-preview", Static).render())  # noqa: E731
        await wait_for(pilot, lambda: "would count" in preview(), "the preview", preview)
        said["count"] = await confirm(pilot, "the count confirmation")
        await wait_for(pilot, lambda: rule(0) is not None, "the count rule in the Rules pane's source")
        assert rule(0).text == format_rule(parse_rule(text)) and rule(0).action == "count"

        # Counted in the kernel: the rules collector's counter, and the pinned map itself.
        counted = rule(0).packets
        await wait_for(pilot, lambda: rule(0).packets >= counted + 100, "100 of the load's packets counted")
        book = RuleBook(pins, str(tmp_path / "rules-state"))
        try:
            _, counts = await asyncio.to_thread(book.read_counted)
        finally:
            book.close()
        assert sum(c[0] for c in counts.values()) >= counted + 100, counts
        assert {a.split()[0] for a in rules().attached} == {link}  # the client's link only: no host interface
        await lab_status(pilot, lambda p: p.ok, "the load generator's requests succeed while counted")

        # r again, ctrl+t: a deny with a TTL (15m), which the operator makes 30 s
        await the_load_generator(pilot)
        field = await editor(pilot)
        assert field.value == text
        await pilot.press("ctrl+t")
        assert field.value == f"deny from {client}/32 on {link} in ttl 15m"
        await pilot.press("end", "backspace", "backspace", "backspace", *f"{TTL}s")
        deny_text = field.value
        assert deny_text == f"deny from {client}/32 on {link} in ttl {TTL}s"
        said["deny"] = await confirm(pilot, "the deny confirmation")
        await wait_for(
            pilot, lambda: rule(1) is not None and rule(0).action == "deny", "the deny rule, first"
        )
        assert {a.split()[0] for a in rules().attached} == {link}

        # Dropped: the deny's counter rises, the count rule behind it sees nothing more
        # while the deny holds, and the load generator's requests get no answer.
        await wait_for(pilot, lambda: rule(0).packets > 0, "the deny drops the load's packets")
        behind, dropped = rule(1).packets, rule(0).packets
        await wait_for(pilot, lambda: rule(0).packets >= dropped + 10 or rule(0).expired, "10 more dropped")
        assert not rule(0).expired, f"the {TTL}s TTL ran out before 10 packets were dropped"
        assert rule(1).packets == behind
        failing = await lab_status(
            pilot, lambda p: "without an answer" in p.detail, "the load generator's requests fail"
        )
        assert not failing.ok and failing.traffic and "requests fail:" in failing.detail

        # The TTL runs out in the kernel: nothing in ebpftop changes the rules meanwhile.
        generation = rules().generation
        await wait_for(pilot, lambda: rule(0).expired, "the deny rule expired", seconds=TTL + DEADLINE)
        behind = rule(1).packets
        await wait_for(pilot, lambda: rule(1).packets > behind, "the count rule counts again")
        stopped = rule(0).packets
        behind = rule(1).packets
        await wait_for(pilot, lambda: rule(1).packets >= behind + 100, "100 more counted, none dropped")
        assert rule(0).packets == stopped  # the deny matches nothing any more
        assert rules().generation == generation  # and no change was made: the kernel stopped it
        await lab_status(pilot, lambda p: p.ok, "the load generator's requests succeed again")

    # Both dialogs named the one interface and how long each rule lives.
    assert said["count"].startswith(f"Add rule: {format_rule(parse_rule(text))}")
    assert (
        f"Interfaces (only this one: on IFACE): {link}; the rules program is attached now to {link}."
        in (said["count"])
    )
    assert (
        "After ebpftop exits: removed (a count rule of this dashboard session ends with it)." in said["count"]
    )
    assert said["deny"].startswith(f"Add rule: {deny_text}")
    assert f"Interfaces (only this one: on IFACE): {link}." in said["deny"]  # attached there already
    assert f"it STAYS in the kernel (pinned), enforced, until its TTL of {TTL}s runs out" in said["deny"]
    assert "It goes first (highest priority)" in said["deny"]
    assert said["the deny confirmation dangerous"] == "True"
    # Audited: intent and result of both additions, then the session's end removing its count rule.
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["event"], e["action"]["kind"]) for e in entries[:4]] == [
        ("intent", "rules.add"),
        ("result", "rules.add"),
    ] * 2
    intents = entries[0::2]
    assert [e["action"]["target"] for e in intents[:2]] == [format_rule(parse_rule(text)), deny_text]
    assert [(e["ref"], e["ok"]) for e in entries[1:4:2]] == [
        (intents[0]["seq"], True),
        (intents[1]["seq"], True),
    ]
    assert [(e["event"], e["action"]["kind"], e["automatic"]) for e in entries[4:]] == [
        ("intent", "rules.delete", True),
        ("result", "rules.delete", True),
    ]
    assert entries[5]["ok"] and entries[4]["action"]["params"]["session"] == os.getpid()
    assert verify(tmp_path / "audit.jsonl", tmp_path / "audit.key").ok
    # The session's count rule is gone from the kernel; nothing it added is enforced.
    book = RuleBook(pins, str(tmp_path / "rules-state"))
    try:
        left = book.read().rules
    finally:
        book.close()
    assert not [r for r in left if r.action == "count"], left
