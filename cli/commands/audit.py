"""`ebpftop audit verify|show`: check the audit log's chain, or read its last entries.

Exit codes: 0 intact (or shown), 1 the log is damaged or tampered with (the first bad
entry is named), 2 the log or key is missing or unreadable, or bad arguments, 3 the
chain is intact but an action's outcome is unknown: an intent no result answers (the
process died while acting, or the action is still running), each named on stderr.
Not tampering, so not 1; not "OK" either, since someone must find out what happened.
Everything read from the log is untrusted and printed through `text.clean`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from ebpftop.core.untrusted import clean

EXIT_UNFINISHED = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="verify or show the tamper-evident audit log")
    verbs = p.add_subparsers(dest="audit_command", metavar="ACTION")
    p.set_defaults(func=run)

    v = verbs.add_parser(
        "verify",
        help="check the hash chain and signatures; name the first bad entry",
        epilog="Exit status: 0 intact; 1 damaged or tampered with; 2 log or key missing or "
        "unreadable; 3 intact, but an action has no result (its outcome is unknown).",
    )
    v.add_argument("audit_file", nargs="?", metavar="FILE", help="the log (default: --audit-log / settings)")
    v.add_argument(
        "--key", dest="audit_key_file", metavar="KEY", help="the HMAC key file (default: settings audit_key)"
    )

    s = verbs.add_parser("show", help="print the last entries of the log")
    s.add_argument("audit_file", nargs="?", metavar="FILE", help="the log (default: --audit-log / settings)")
    s.add_argument(
        "-n", dest="audit_count", type=int, default=20, metavar="N", help="how many entries (default 20)"
    )


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "audit_command", None)
    if command == "verify":
        return run_verify(args)
    if command == "show":
        return run_show(args)
    print("usage: ebpftop audit {verify,show} [FILE]  (see ebpftop audit --help)", file=sys.stderr)
    return 2


def _paths(args: argparse.Namespace) -> tuple[str, str] | None:
    from ebpftop.cli.options import settings_from_args
    from ebpftop.core.config import ConfigError

    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"ebpftop: {clean(exc)}", file=sys.stderr)
        return None
    log = getattr(args, "audit_file", None) or settings.audit_log
    key = getattr(args, "audit_key_file", None) or settings.audit_key
    return log, key


def run_verify(args: argparse.Namespace) -> int:
    from ebpftop.core.audit import AuditError, verify

    paths = _paths(args)
    if paths is None:
        return 2
    log, key = paths
    try:
        report = verify(log, key)
    except AuditError as exc:
        print(f"ebpftop audit verify: {clean(exc)}", file=sys.stderr)
        return 2
    if report.ok:
        print(clean(report.summary()))
        for entry in report.unfinished:
            print(f"ebpftop audit verify: warning: {clean(entry)}", file=sys.stderr)
        return EXIT_UNFINISHED if report.unfinished else 0
    print(f"ebpftop audit verify: {clean(report.summary())}", file=sys.stderr)
    return 1


def run_show(args: argparse.Namespace) -> int:
    from ebpftop.core.audit import AuditError, parse_line, read_lines

    paths = _paths(args)
    if paths is None:
        return 2
    if args.audit_count < 1:
        print("ebpftop audit show: -n must be at least 1", file=sys.stderr)
        return 2
    log, _key = paths
    try:
        lines, _complete = read_lines(log)
    except AuditError as exc:
        print(f"ebpftop audit show: {clean(exc)}", file=sys.stderr)
        return 2
    if not lines:
        print(f"{clean(log)}: no entries")
        return 0
    first = max(0, len(lines) - args.audit_count)
    for number, raw in enumerate(lines[first:], first + 1):
        print(format_entry(number, parse_line(raw)))
    print(f"(entries are not verified here; run `ebpftop audit verify {clean(log)}`)", file=sys.stderr)
    return 0


def format_entry(number: int, entry: dict[str, Any] | None) -> str:
    """One human line per entry: seq, time, who, what happened, to what, and how."""
    if entry is None:
        return f"line {number}: not an audit entry"
    raw_actor, raw_action = entry.get("actor"), entry.get("action")
    actor: dict[str, Any] = raw_actor if isinstance(raw_actor, dict) else {}
    action: dict[str, Any] = raw_action if isinstance(raw_action, dict) else {}
    who = clean(actor.get("user", "?"), 32)
    if actor.get("ssh_client"):
        who += f" from {clean(actor['ssh_client'], 48)}"
    if actor.get("tty"):
        who += f" on {clean(actor['tty'], 24)}"
    event = clean(entry.get("event", "?"), 12)
    what = clean(action.get("title") or action.get("kind") or "?", 60)
    if action.get("target"):
        what += f" [{clean(action['target'], 60)}]"
    if action.get("params"):
        what += f" {clean(_params(action['params']), 120)}"
    outcome = ""
    if event == "result":
        outcome = ("ok" if entry.get("ok") else "FAILED") + f" (for #{clean(entry.get('ref'))})"
    if entry.get("message"):
        outcome += (": " if outcome else "") + clean(entry["message"], 200)
    if entry.get("automatic"):
        event += " (automatic)"
    return "  ".join(
        part
        for part in (f"#{clean(entry.get('seq', '?'))}", _when(entry), who, f"{event:<9}", what, outcome)
        if part
    )


def _when(entry: dict[str, Any]) -> str:
    epoch = entry.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
        try:
            return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            pass
    return clean(entry.get("time", "?"), 32)


def _params(params: object) -> str:
    if isinstance(params, dict):
        return " ".join(f"{k}={v!r}" for k, v in params.items())
    return repr(params)
