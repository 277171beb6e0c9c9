"""The action gate: read-only refusal, confirmation, audit before and after, failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ebpftop.actions.marker import ActionInputError, marker_action
from ebpftop.core.audit import Actor, AuditError, AuditLog, verify
from ebpftop.core.bus import Bus
from ebpftop.core.gate import Action, ActionResult, Gate
from ebpftop.core.model import Marker
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings

ACTOR = Actor(user="alice", uid=0, ssh_client="192.0.2.7", tty="/dev/pts/3", pid=4242)
ACTION = Action(
    kind="test.noop", title="No-op", description="Does nothing at all.", target="t1", params={"n": 1}
)


class Calls:
    """A perform/confirm pair that records whether it was called."""

    def __init__(self, answer: bool = True, result: str = "done") -> None:
        self.answer, self.result = answer, result
        self.confirmed: list[Action] = []
        self.performed = 0

    async def confirm(self, action: Action) -> bool:
        self.confirmed.append(action)
        return self.answer

    async def perform(self) -> str:
        self.performed += 1
        return self.result


def make_gate(tmp_path: Path, read_only: bool = False) -> Gate:
    return Gate(
        AuditLog(tmp_path / "audit.jsonl", tmp_path / "key" / "audit.key"), read_only=read_only, actor=ACTOR
    )


def entries(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def assert_chain_ok(tmp_path: Path) -> None:
    report = verify(tmp_path / "audit.jsonl", tmp_path / "key" / "audit.key")
    assert report.ok, report.summary()


async def test_read_only_refuses_without_asking_or_acting(tmp_path):
    gate = make_gate(tmp_path, read_only=True)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert result.refused and not result.ok and not result.cancelled
    assert "read-only" in result.message
    assert calls.performed == 0 and calls.confirmed == []
    [entry] = entries(tmp_path)
    assert entry["event"] == "refused" and entry["ok"] is False
    assert entry["action"]["kind"] == "test.noop" and entry["actor"]["user"] == "alice"
    assert_chain_ok(tmp_path)


async def test_read_only_refuses_automatic_actions_too(tmp_path):
    gate = make_gate(tmp_path, read_only=True)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm, automatic=True)
    assert result.refused and calls.performed == 0
    assert entries(tmp_path)[0]["automatic"] is True


async def test_read_only_cannot_be_switched_off(tmp_path):
    gate = make_gate(tmp_path, read_only=True)
    with pytest.raises(AttributeError):
        gate.read_only = False  # type: ignore[misc]
    calls = Calls()
    assert (await gate.execute(ACTION, calls.perform, calls.confirm)).refused
    assert calls.performed == 0


async def test_read_only_refuses_even_when_the_log_is_unwritable(tmp_path):
    (tmp_path / "file").write_text("")
    gate = Gate(AuditLog(tmp_path / "file" / "audit.jsonl", tmp_path / "k"), read_only=True, actor=ACTOR)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert result.refused and calls.performed == 0
    assert "not recorded" in result.message


async def test_runtime_gate_follows_kiosk(tmp_path):
    base = dict(audit_log=str(tmp_path / "a.jsonl"), audit_key=str(tmp_path / "k"))
    kiosk = Runtime(Settings(kiosk=True, **base), collectors=[])
    normal = Runtime(Settings(**base), collectors=[])
    assert kiosk.gate.read_only and not normal.gate.read_only
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "k").exists()  # lazy
    calls = Calls()
    assert (await kiosk.gate.execute(ACTION, calls.perform, calls.confirm)).refused
    assert calls.performed == 0


async def test_declined_confirmation_does_nothing_and_is_audited(tmp_path):
    gate = make_gate(tmp_path)
    calls = Calls(answer=False)
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert result == ActionResult(False, "cancelled: nothing was done", cancelled=True)
    assert calls.confirmed == [ACTION] and calls.performed == 0
    assert [e["event"] for e in entries(tmp_path)] == ["cancelled"]
    assert_chain_ok(tmp_path)


async def test_confirmation_that_raises_cancels(tmp_path):
    gate = make_gate(tmp_path)
    calls = Calls()

    async def broken(action: Action) -> bool:
        raise RuntimeError("screen went away")

    result = await gate.execute(ACTION, calls.perform, broken)
    assert result.cancelled and not result.ok and calls.performed == 0
    assert "screen went away" in result.message
    assert [e["event"] for e in entries(tmp_path)] == ["cancelled"]


async def test_success_writes_intent_before_and_result_after(tmp_path):
    gate = make_gate(tmp_path)
    seen_during_perform: list[list[str]] = []

    async def perform() -> str:
        seen_during_perform.append([e["event"] for e in entries(tmp_path)])
        return "did it"

    calls = Calls()
    result = await gate.execute(ACTION, perform, calls.confirm)
    assert result == ActionResult(True, "did it")
    assert seen_during_perform == [["intent"]]
    intent, outcome = entries(tmp_path)
    assert intent["event"] == "intent" and intent["ok"] is None
    assert intent["action"] == {
        "kind": "test.noop",
        "title": "No-op",
        "description": "Does nothing at all.",
        "target": "t1",
        "params": {"n": 1},
        "dangerous": False,
    }
    assert outcome["event"] == "result" and outcome["ref"] == intent["seq"]
    assert outcome["ok"] is True and outcome["message"] == "did it"
    assert_chain_ok(tmp_path)


async def test_automatic_skips_confirmation_but_not_the_audit(tmp_path):
    gate = make_gate(tmp_path)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm, automatic=True)
    assert result.ok and calls.performed == 1 and calls.confirmed == []
    assert [(e["event"], e["automatic"]) for e in entries(tmp_path)] == [("intent", True), ("result", True)]


async def test_perform_raising_becomes_a_failed_result(tmp_path):
    gate = make_gate(tmp_path)
    calls = Calls()

    async def perform() -> str:
        raise OSError("map update failed: E2BIG")

    result = await gate.execute(ACTION, perform, calls.confirm)
    assert not result.ok and not result.refused and not result.cancelled
    assert "OSError: map update failed: E2BIG" in result.message
    _, outcome = entries(tmp_path)
    assert outcome["event"] == "result" and outcome["ok"] is False
    assert "map update failed" in outcome["message"]
    assert_chain_ok(tmp_path)


async def test_unwritable_audit_log_means_the_action_does_not_run(tmp_path):
    (tmp_path / "file").write_text("")  # a file where a directory should be: fails even as root
    gate = Gate(AuditLog(tmp_path / "file" / "audit.jsonl", tmp_path / "k"), read_only=False, actor=ACTOR)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert not result.ok and calls.performed == 0
    assert result.message.startswith("not performed: the audit log could not be written")
    assert "file" in result.message


async def test_damaged_log_tail_means_the_action_does_not_run(tmp_path):
    gate = make_gate(tmp_path)
    calls = Calls()
    assert (await gate.execute(ACTION, calls.perform, calls.confirm)).ok
    path = tmp_path / "audit.jsonl"
    path.write_bytes(path.read_bytes()[:-5])
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert not result.ok and calls.performed == 1
    assert "incomplete line" in result.message


async def test_result_entry_failure_is_reported_not_hidden(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "key" / "audit.key")
    real_append = log.append

    def append(event, *args, **kwargs):
        if event == "result":
            raise AuditError("disk full")
        return real_append(event, *args, **kwargs)

    log.append = append  # type: ignore[method-assign]
    gate = Gate(log, read_only=False, actor=ACTOR)
    calls = Calls()
    result = await gate.execute(ACTION, calls.perform, calls.confirm)
    assert result.ok and calls.performed == 1
    assert "done" in result.message and "could not be written to the audit log: disk full" in result.message


async def test_cancelled_mid_perform_records_the_interruption(tmp_path):
    gate = make_gate(tmp_path)
    started = asyncio.Event()

    async def perform() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    calls = Calls()
    task = asyncio.create_task(gate.execute(ACTION, perform, calls.confirm))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, outcome = entries(tmp_path)
    assert outcome["event"] == "result" and outcome["ok"] is False and "interrupted" in outcome["message"]
    assert_chain_ok(tmp_path)


# --- the built-in harmless action -------------------------------------------------------------


async def test_marker_through_the_gate_publishes_and_is_audited(tmp_path):
    bus = Bus()
    seen = []
    bus.subscribe(seen.append)
    gate = make_gate(tmp_path)
    action, perform = marker_action(bus, "deploy 42 started", ACTOR)
    assert action.kind == "marker.add" and "deploy 42 started" in action.description
    calls = Calls()
    result = await gate.execute(action, perform, calls.confirm)
    assert result == ActionResult(True, "marker added")
    [snap] = seen
    assert snap.source == "marker" and snap.data == Marker("deploy 42 started", "alice")
    intent, _ = entries(tmp_path)
    assert intent["action"]["params"] == {"text": "deploy 42 started"}
    assert_chain_ok(tmp_path)


async def test_marker_refused_in_kiosk_publishes_nothing(tmp_path):
    bus = Bus()
    seen = []
    bus.subscribe(seen.append)
    gate = make_gate(tmp_path, read_only=True)
    action, perform = marker_action(bus, "x", ACTOR)
    calls = Calls()
    assert (await gate.execute(action, perform, calls.confirm)).refused
    assert seen == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "marker text is empty"),
        ("   ", "marker text is empty"),
        ("x" * 201, "marker text is 201 characters long; the limit is 200"),
        ("red \x1b[31m alert", r"control character (\x1b) at position 5"),
        ("two\nlines", r"control character (\x0a) at position 4"),
        ("abc\u202etxt", r"control character (\u202e) at position 4"),
        (None, "marker text must be a string"),
    ],
)
def test_bad_marker_text_rejected_before_any_audit(tmp_path, text, message):
    bus = Bus()
    with pytest.raises(ActionInputError) as info:
        marker_action(bus, text, ACTOR)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert bus.published == 0
    assert not (tmp_path / "audit.jsonl").exists()


def test_marker_text_at_the_limit_and_unicode_is_fine():
    action, _ = marker_action(Bus(), "é" * 200, ACTOR)
    assert action.params == {"text": "é" * 200}
