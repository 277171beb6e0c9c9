"""The audit log: chain, signatures, tamper detection (each kind, right entry), key, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpftop.cli.main import main
from ebpftop.core import audit
from ebpftop.core.audit import (
    BAD_SIGNATURE,
    DUPLICATED,
    EDITED,
    EMPTY,
    MALFORMED,
    REMOVED,
    REORDERED,
    TRUNCATED,
    Actor,
    AuditError,
    AuditLog,
    canonical,
    line_hash,
    sign,
    verify,
)

ACTOR = Actor(user="alice", uid=0, ssh_client="192.0.2.7", tty="/dev/pts/3", pid=4242)
OTHER_KEY = bytes(range(32))


def write_log(tmp_path: Path, n: int = 6) -> AuditLog:
    log = AuditLog(tmp_path / "log" / "audit.jsonl", tmp_path / "key" / "audit.key")
    for i in range(n):
        if i % 2 == 0:
            log.append("intent", ACTOR, {"kind": "marker.add", "params": {"text": f"marker {i}"}})
        else:
            log.append("result", ACTOR, {"kind": "marker.add"}, ref=i, ok=True, message="marker added")
    return log


def lines_of(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines()


def put_lines(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def check(log: AuditLog, kind: str, line: int, seq: int | None):
    report = verify(log.path, log.key_path)
    assert not report.ok, report
    assert (report.problem.kind, report.problem.line, report.problem.seq) == (kind, line, seq), (
        report.summary()
    )
    return report


# --- intact logs ---------------------------------------------------------------------------


def test_intact_log_verifies_and_chains(tmp_path):
    log = write_log(tmp_path, 6)
    report = verify(log.path, log.key_path)
    assert report.ok, report.summary()
    assert report.entries == 6 and report.last_seq == 6
    assert report.summary().startswith("OK: 6 entries, chain intact")
    entries = [json.loads(x) for x in lines_of(log)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["prev"] == audit.GENESIS
    for after, raw in zip(entries[1:], lines_of(log)[:-1], strict=True):
        assert after["prev"] == line_hash(raw)
    assert report.last_hash == line_hash(lines_of(log)[-1])


def test_entry_records_who_when_what(tmp_path):
    log = write_log(tmp_path, 2)
    first, second = (json.loads(x) for x in lines_of(log))
    assert first["actor"] == {
        "user": "alice",
        "uid": 0,
        "ssh_client": "192.0.2.7",
        "tty": "/dev/pts/3",
        "pid": 4242,
    }
    assert first["event"] == "intent" and first["action"]["params"] == {"text": "marker 0"}
    assert first["time"].endswith("Z") and isinstance(first["epoch"], float)
    assert second["event"] == "result" and second["ok"] is True and second["message"] == "marker added"
    key = audit.load_key(log.key_path)
    assert first["hmac"] == sign(key, first)


def test_untrusted_strings_stored_as_given(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k")
    weird = Actor(user="\x1b]0;pwned\x07bob\u202e", uid=1000, ssh_client="::1", tty="", pid=1)
    log.append("intent", weird, {"kind": "marker.add", "params": {"text": "[bold]x[/] \x1b[2J"}})
    raw = lines_of(log)[0]
    assert raw.isascii()  # escaped in the file: the log itself cannot drive a terminal
    entry = json.loads(raw)
    assert entry["actor"]["user"] == weird.user
    assert entry["action"]["params"]["text"] == "[bold]x[/] \x1b[2J"
    assert verify(log.path, log.key_path).ok


def test_params_are_normalised_before_signing(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k")
    log.append("intent", ACTOR, {"kind": "x", "params": {1: (1, 2), "f": 0.1}})
    assert verify(log.path, log.key_path).ok
    assert json.loads(lines_of(log)[0])["action"]["params"] == {"1": [1, 2], "f": 0.1}


def test_unserialisable_params_refused_and_nothing_written(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k")
    with pytest.raises(AuditError, match="cannot be written"):
        log.append("intent", ACTOR, {"kind": "x", "params": {"obj": object()}})
    with pytest.raises(AuditError, match="cannot be written"):
        log.append("intent", ACTOR, {"kind": "x", "params": {"nan": float("nan")}})
    assert not log.path.exists()


def test_concurrent_processes_do_not_interleave(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k" / "audit.key")  # no key yet: they race for it too
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(log.path), str(log.key_path), 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    report = verify(log.path, log.key_path)
    assert report.ok, report.summary()
    assert report.entries == 100


def test_entries_longer_than_the_tail_read_chunk(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k")
    for i in range(3):
        log.append("intent", ACTOR, {"kind": "x", "params": {"text": str(i) * 10_000}})
    report = verify(log.path, log.key_path)
    assert report.ok and report.last_seq == 3


def _append_many(path: str, key: str, n: int) -> None:
    log = AuditLog(path, key)
    for i in range(n):
        log.append("intent", ACTOR, {"kind": "marker.add", "params": {"i": i, "pid": os.getpid()}})


# --- tampering: each kind detected, at the right entry ---------------------------------------


def test_edited_field_in_the_middle(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[2])
    entry["action"]["params"]["text"] = "nothing happened here"
    lines[2] = canonical(entry)
    put_lines(log, lines)
    report = check(log, EDITED, 3, 3)
    assert "content was changed" in report.problem.detail


def test_edited_last_entry(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[-1])
    entry["ok"] = False
    lines[-1] = canonical(entry)
    put_lines(log, lines)
    check(log, EDITED, 6, 6)


def test_edited_seq_is_an_edit_not_a_removal(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[3])
    entry["seq"] = 9
    lines[3] = canonical(entry)
    put_lines(log, lines)
    check(log, EDITED, 4, 9)


def test_edited_whitespace_only(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines[1] = lines[1].replace(b'"event":', b'"event": ', 1)
    put_lines(log, lines)
    report = check(log, EDITED, 2, 2)
    assert "not in the form ebpftop writes" in report.problem.detail


@pytest.mark.parametrize("gone", [0, 2, 5])
def test_removed_line(tmp_path, gone):
    log = write_log(tmp_path)
    lines = lines_of(log)
    del lines[gone]
    put_lines(log, lines)
    if gone == 5:
        # Cutting whole entries off the end leaves a shorter intact log: only an outside
        # anchor (the last seq and hash verify prints) can tell.
        report = verify(log.path, log.key_path)
        assert report.ok and report.last_seq == 5
        return
    report = check(log, REMOVED, gone + 1, gone + 2)
    assert f"seq {gone + 1} missing" in report.problem.detail


def test_removed_several_lines(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    del lines[1:4]
    put_lines(log, lines)
    report = check(log, REMOVED, 2, 5)
    assert "seq 2 to 4 missing" in report.problem.detail


def test_swapped_lines(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines[2], lines[3] = lines[3], lines[2]
    put_lines(log, lines)
    report = check(log, REORDERED, 3, 4)
    assert "line 4" in report.problem.detail


def test_line_moved_to_the_end(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines.append(lines.pop(1))
    put_lines(log, lines)
    check(log, REORDERED, 2, 3)


def test_line_moved_back_is_reordered_not_removed(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines.insert(1, lines.pop(4))  # seq 5 now at line 2
    put_lines(log, lines)
    check(log, REORDERED, 2, 5)


def test_duplicated_line(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines.insert(3, lines[2])
    put_lines(log, lines)
    check(log, DUPLICATED, 4, 3)


def test_whole_log_signed_with_another_key(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    forged, prev = [], audit.GENESIS
    for raw in lines:
        entry = json.loads(raw)
        entry["prev"] = prev
        entry["hmac"] = sign(OTHER_KEY, entry)
        forged.append(canonical(entry))
        prev = line_hash(forged[-1])
    put_lines(log, forged)
    report = check(log, BAD_SIGNATURE, 1, 1)
    assert "another key" in report.problem.detail


def test_verify_with_the_wrong_key_file(tmp_path):
    log = write_log(tmp_path)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(OTHER_KEY.hex() + "\n")
    report = verify(log.path, wrong)
    assert (report.problem.kind, report.problem.line) == (BAD_SIGNATURE, 1)


def test_one_entry_re_signed_with_another_key(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[3])
    entry["hmac"] = sign(OTHER_KEY, entry)
    lines[3] = canonical(entry)
    put_lines(log, lines)
    report = check(log, BAD_SIGNATURE, 4, 4)
    assert "hmac field was altered" in report.problem.detail


def test_hmac_field_altered(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[1])
    entry["hmac"] = ("0" if entry["hmac"][0] != "0" else "1") + entry["hmac"][1:]
    lines[1] = canonical(entry)
    put_lines(log, lines)
    check(log, BAD_SIGNATURE, 2, 2)


def test_hmac_field_removed(tmp_path):
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[1])
    del entry["hmac"]
    lines[1] = canonical(entry)
    put_lines(log, lines)
    check(log, BAD_SIGNATURE, 2, 2)


def test_edit_with_chain_rewritten_but_no_key(tmp_path):
    """Editing an entry and fixing every later prev cannot fix the HMACs."""
    log = write_log(tmp_path)
    lines = lines_of(log)
    entry = json.loads(lines[2])
    entry["message"] = "all fine"
    lines[2] = canonical(entry)
    for i in range(3, len(lines)):
        later = json.loads(lines[i])
        later["prev"] = line_hash(lines[i - 1])
        lines[i] = canonical(later)
    put_lines(log, lines)
    report = verify(log.path, log.key_path)
    assert not report.ok and report.problem.line == 3


def test_spliced_entry_from_another_log_with_the_same_key(tmp_path):
    log = write_log(tmp_path)
    other = AuditLog(tmp_path / "other.jsonl", log.key_path)
    for _ in range(3):
        other.append("intent", ACTOR, {"kind": "elsewhere"})
    lines = lines_of(log)
    lines[2] = lines_of(other)[2]  # valid signature, right seq, wrong chain
    put_lines(log, lines)
    report = check(log, EDITED, 3, 3)
    assert "does not chain" in report.problem.detail


def test_truncated_last_line(tmp_path):
    log = write_log(tmp_path)
    data = log.path.read_bytes()
    log.path.write_bytes(data[: len(data) - 40])
    check(log, TRUNCATED, 6, None)


def test_missing_final_newline(tmp_path):
    log = write_log(tmp_path)
    log.path.write_bytes(log.path.read_bytes()[:-1])
    check(log, TRUNCATED, 6, 6)


@pytest.mark.parametrize("junk", [b"", b"not json", b"[1,2]", b"\xff\xfe"])
def test_malformed_line(tmp_path, junk):
    log = write_log(tmp_path)
    lines = lines_of(log)
    lines.insert(2, junk)
    put_lines(log, lines)
    check(log, MALFORMED, 3, None)


def test_empty_log_is_not_ok(tmp_path):
    log = write_log(tmp_path, 1)
    log.path.write_bytes(b"")
    report = verify(log.path, log.key_path)
    assert not report.ok and report.problem.kind == EMPTY and report.entries == 0
    assert "no entries" in report.summary()


def test_missing_log_or_key_raises_with_the_path(tmp_path):
    log = write_log(tmp_path, 1)
    with pytest.raises(AuditError, match=r"no audit log at .*nope"):
        verify(tmp_path / "nope", log.key_path)
    with pytest.raises(AuditError, match=r"audit key .*nokey does not exist"):
        verify(log.path, tmp_path / "nokey")
    (tmp_path / "badkey").write_text("not hex\n")
    with pytest.raises(AuditError, match="is not a key"):
        verify(log.path, tmp_path / "badkey")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_edit_is_detected_at_its_line(tmp_path, data):
    if not (tmp_path / "log" / "audit.jsonl").exists():
        write_log(tmp_path, 4)
    log = AuditLog(tmp_path / "log" / "audit.jsonl", tmp_path / "key" / "audit.key")
    original = log.path.read_bytes()
    pos = data.draw(st.integers(0, len(original) - 1), label="pos")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]), label="byte")
    edited = bytearray(original)
    edited[pos] = byte
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edited.jsonl"
        path.write_bytes(bytes(edited))
        report = verify(path, log.key_path)
    assert not report.ok
    assert report.problem.line == original[:pos].count(b"\n") + 1, report.summary()
    assert report.problem.kind in (EDITED, BAD_SIGNATURE, MALFORMED, TRUNCATED), report.summary()


# --- writer refuses to build on a damaged log -----------------------------------------------


def test_append_refuses_after_incomplete_last_line(tmp_path):
    log = write_log(tmp_path, 2)
    damaged = log.path.read_bytes()[:-10]
    log.path.write_bytes(damaged)
    with pytest.raises(AuditError, match="incomplete line"):
        log.append("intent", ACTOR, {"kind": "x"})
    assert log.path.read_bytes() == damaged


def test_append_refuses_after_tampered_last_entry(tmp_path):
    log = write_log(tmp_path, 2)
    lines = lines_of(log)
    entry = json.loads(lines[-1])
    entry["message"] = "edited"
    lines[-1] = canonical(entry)
    put_lines(log, lines)
    before = log.path.read_bytes()
    with pytest.raises(AuditError, match=r"last entry .* \(seq 2\) does not verify"):
        log.append("intent", ACTOR, {"kind": "x"})
    assert log.path.read_bytes() == before


# --- the key ---------------------------------------------------------------------------------


def test_key_created_on_first_use_root_only(tmp_path):
    log = AuditLog(tmp_path / "log" / "a.jsonl", tmp_path / "secret" / "audit.key")
    assert not log.key_path.exists()
    log.append("intent", ACTOR, {"kind": "x"})
    st_key = os.stat(log.key_path)
    assert stat.S_IMODE(st_key.st_mode) == 0o600
    assert st_key.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(log.key_path.parent).st_mode) == 0o700
    assert len(audit.load_key(log.key_path)) == 32
    assert log.key_path.read_bytes() not in log.path.read_bytes()
    assert [p.name for p in log.key_path.parent.iterdir()] == ["audit.key"]  # no temp left


def test_key_is_kept_across_appends(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k" / "audit.key")
    log.append("intent", ACTOR, {"kind": "x"})
    key = log.key_path.read_bytes()
    log.append("result", ACTOR, {"kind": "x"}, ref=1, ok=True)
    assert log.key_path.read_bytes() == key
    assert audit.create_key(log.key_path) == audit.load_key(log.key_path)  # never overwritten
    assert log.key_path.read_bytes() == key


def test_missing_key_with_existing_entries_refuses(tmp_path):
    log = write_log(tmp_path, 2)
    log.key_path.unlink()
    before = log.path.read_bytes()
    with pytest.raises(AuditError, match=r"missing but .* already has entries"):
        log.append("intent", ACTOR, {"kind": "x"})
    assert log.path.read_bytes() == before and not log.key_path.exists()


def test_key_readable_by_others_refuses(tmp_path):
    log = write_log(tmp_path, 1)
    os.chmod(log.key_path, 0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        log.append("intent", ACTOR, {"kind": "x"})
    assert len(lines_of(log)) == 1


@pytest.mark.parametrize("broken", ["key", "log"])
def test_a_first_append_that_cannot_make_key_or_log_leaves_nothing(tmp_path, broken):
    """A file where a directory should be fails as root too (no permission bits to bypass)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    good = tmp_path / "new" / "deeper"
    key = (blocker if broken == "key" else good) / "audit.key"
    log_path = (blocker if broken == "log" else good) / "audit.jsonl"
    log = AuditLog(log_path, key)
    with pytest.raises(AuditError, match=f"cannot (create audit key|open audit log) {tmp_path}"):
        log.append("intent", ACTOR, {"kind": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # no log, no key, no directory


def test_key_and_log_must_differ(tmp_path):
    log = AuditLog(tmp_path / "same", tmp_path / "same")
    with pytest.raises(AuditError, match="same file"):
        log.append("intent", ACTOR, {"kind": "x"})


# --- Actor -----------------------------------------------------------------------------------


def test_actor_from_sudo_over_ssh():
    actor = Actor.current({"SUDO_USER": "carol", "SSH_CLIENT": "198.51.100.9 51234 22", "USER": "root"})
    assert actor.user == "carol"
    assert actor.ssh_client == "198.51.100.9"
    assert actor.uid == os.geteuid() and actor.pid == os.getpid()


def test_actor_local_without_sudo():
    actor = Actor.current({"SSH_CONNECTION": "2001:db8::5 40000 2001:db8::1 22"})
    assert actor.ssh_client == "2001:db8::5"
    assert actor.user  # login name or "uid N", never empty
    assert Actor.current({}).ssh_client == ""


# --- CLI -------------------------------------------------------------------------------------


def test_cli_verify_intact(tmp_path, capsys):
    log = write_log(tmp_path, 4)
    assert main(["audit", "verify", str(log.path), "--key", str(log.key_path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 4 entries, chain intact")


@pytest.mark.parametrize("n", [4, 3])  # 3: tampering also wins over the unanswered last intent
def test_cli_verify_tampered_names_first_bad_entry(tmp_path, capsys, n):
    log = write_log(tmp_path, n)
    lines = lines_of(log)
    del lines[1]
    put_lines(log, lines)
    assert main(["audit", "verify", str(log.path), "--key", str(log.key_path)]) == 1
    err = capsys.readouterr().err
    assert "first bad entry at line 2 (seq 3): removed: seq 2 missing" in err


def test_cli_verify_missing_file_and_key(tmp_path, capsys):
    log = write_log(tmp_path, 1)
    assert main(["audit", "verify", str(tmp_path / "nope.jsonl"), "--key", str(log.key_path)]) == 2
    assert "no audit log at" in capsys.readouterr().err
    assert main(["audit", "verify", str(log.path), "--key", str(tmp_path / "nokey")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_verify_empty_log(tmp_path, capsys):
    log = write_log(tmp_path, 1)
    log.path.write_bytes(b"")
    assert main(["audit", "verify", str(log.path), "--key", str(log.key_path)]) == 1
    assert "no entries" in capsys.readouterr().err


def test_cli_uses_global_audit_log_flag(tmp_path, capsys):
    log = write_log(tmp_path, 2)
    assert main(["--audit-log", str(log.path), "audit", "verify", "--key", str(log.key_path)]) == 0
    assert "OK: 2 entries" in capsys.readouterr().out


def test_cli_exit_codes_in_a_real_process(tmp_path):
    log = write_log(tmp_path, 4)  # two intents, each answered
    cmd = [
        sys.executable,
        "-m",
        "ebpftop.cli.main",
        "audit",
        "verify",
        str(log.path),
        "--key",
        str(log.key_path),
    ]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    lines = lines_of(log)
    lines[0], lines[1] = lines[1], lines[0]
    put_lines(log, lines)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and "line 1 (seq 2): reordered" in proc.stderr


def test_an_intent_without_a_result_is_reported_apart_from_tampering(tmp_path, capsys):
    log = write_log(tmp_path, 4)
    log.append("intent", ACTOR, {"kind": "rollout.rollback\x1b[2J", "target": "checkout"})
    report = verify(log.path, log.key_path)
    assert report.ok  # the chain itself is intact
    assert [(u.line, u.seq, u.action) for u in report.unfinished] == [(5, 5, "rollout.rollback\x1b[2J")]
    assert main(["audit", "verify", str(log.path), "--key", str(log.key_path)]) == 3
    out, err = capsys.readouterr()
    assert not out.startswith("OK") and out.startswith(
        "chain intact, but 1 action without a result: 5 entries"
    )
    assert err.splitlines() == [
        "ebpftop audit verify: warning: line 5 (seq 5): intent rollout.rollback\\x1b[2J has no result: "
        "its outcome is unknown (interrupted before it finished, or still running)"
    ]
    # once its result is written, the log is OK again
    log.append("result", ACTOR, {"kind": "rollout.rollback"}, ref=5, ok=True)
    assert main(["audit", "verify", str(log.path), "--key", str(log.key_path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 6 entries, chain intact")


def test_an_unanswered_intent_in_the_middle_is_reported_too(tmp_path):
    log = write_log(tmp_path, 2)
    log.append("intent", ACTOR, {"kind": "marker.add"})  # seq 3: the process died here
    log.append("intent", ACTOR, {"kind": "marker.add"})
    log.append("result", ACTOR, {"kind": "marker.add"}, ref=4, ok=True)
    log.append("cancelled", ACTOR, {"kind": "rules.add"}, ok=False)  # no intent, nothing pending
    assert [u.seq for u in verify(log.path, log.key_path).unfinished] == [3]


def test_cli_show_last_entries_cleaned(tmp_path, capsys):
    log = AuditLog(tmp_path / "a.jsonl", tmp_path / "k")
    evil = Actor(user="mallory\x1b[2J", uid=0, ssh_client="203.0.113.5", tty="/dev/pts/1", pid=1)
    log.append(
        "intent",
        evil,
        {"kind": "marker.add", "title": "Add incident marker", "params": {"text": "x\x1b]0;t\x07"}},
    )
    log.append(
        "result",
        evil,
        {"kind": "marker.add", "title": "Add incident marker"},
        ref=1,
        ok=False,
        message="failed: boom\x07",
    )
    with log.path.open("ab") as f:
        f.write(b"garbage\n")
    assert main(["audit", "show", str(log.path), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    rows = out.splitlines()
    assert len(rows) == 2
    assert rows[0].startswith("#2 ") and "mallory\\x1b[2J from 203.0.113.5 on /dev/pts/1" in rows[0]
    assert "FAILED (for #1): failed: boom\\x07" in rows[0]
    assert rows[1] == "line 3: not an audit entry"


def test_cli_show_missing_and_bad_n(tmp_path, capsys):
    assert main(["audit", "show", str(tmp_path / "nope")]) == 2
    assert "no audit log at" in capsys.readouterr().err
    log = write_log(tmp_path, 1)
    assert main(["audit", "show", str(log.path), "-n", "0"]) == 2


def test_cli_command_module_does_not_import_textual():
    code = (
        "import sys, ebpftop.cli.commands.audit\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
