"""The tamper-evident audit log: append-only JSONL, hash-chained and HMAC-signed.

`AuditLog.append` writes the gate's entries; `verify` finds edited, removed, reordered
or badly signed entries and intents without a result. The entry format and what
verification cannot see: docs/ARCHITECTURE.md ("The audit log").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
GENESIS = "0" * 64
KEY_BYTES = 32
# "observed": something ebpftop saw and did not do (a rollback undone behind its back).
EVENTS = ("intent", "result", "refused", "cancelled", "observed")

# What `verify` can report, in the words the CLI prints.
EDITED = "edited"
REMOVED = "removed"
REORDERED = "reordered"
DUPLICATED = "duplicated"
BAD_SIGNATURE = "bad signature"
TRUNCATED = "truncated"
MALFORMED = "malformed"
EMPTY = "empty"


class AuditError(Exception):
    """The audit log or its key cannot be used; the message names the file and why."""


# --- who --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who acts: stored as found in the environment (untrusted, never interpreted)."""

    user: str  # the human: SUDO_USER when run through sudo, else the login name
    uid: int  # the effective uid the action runs with
    ssh_client: str = ""  # client address from SSH_CLIENT / SSH_CONNECTION, "" if local
    tty: str = ""  # terminal of stdin, "" if none
    pid: int = 0

    @classmethod
    def current(cls, env: Mapping[str, str] | None = None) -> Actor:
        env = os.environ if env is None else env
        user = env.get("SUDO_USER") or _login_name()
        ssh = env.get("SSH_CLIENT") or env.get("SSH_CONNECTION") or ""
        return cls(
            user=user,
            uid=os.geteuid(),
            ssh_client=ssh.split()[0] if ssh.split() else "",
            tty=_tty(),
            pid=os.getpid(),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME: the uid is all there is
        return f"uid {os.getuid()}"


def _tty() -> str:
    try:
        return os.ttyname(sys.stdin.fileno()) if sys.stdin and sys.stdin.isatty() else ""
    except (OSError, ValueError, AttributeError):
        return ""


# --- encoding ---------------------------------------------------------------------------


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value: what is signed, hashed and written."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def sign(key: bytes, body: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of an entry without its `hmac` field."""
    return hmac.new(
        key, canonical({k: v for k, v in body.items() if k != "hmac"}), hashlib.sha256
    ).hexdigest()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


# --- key --------------------------------------------------------------------------------


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read the HMAC key (64 hex characters). Raises AuditError naming the problem."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise AuditError(f"audit key {path} does not exist") from None
    except OSError as exc:
        raise AuditError(f"cannot read audit key {path}: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < KEY_BYTES:
        raise AuditError(f"audit key {path} is not a key: expected {KEY_BYTES * 2} hex characters")
    return key


def create_key(path: str | os.PathLike[str], *, made: list[Path] | None = None) -> bytes:
    """Create the key file (0600, parent 0700 when we create it) unless it exists.

    The key is written to a private temp file and linked into place, so a second
    ebpftop starting at the same moment either wins or reads the complete winner.
    `made`, when given, collects the directories and the key file this call created.
    """
    path = Path(path)
    _make_dir(path.parent, 0o700, made)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_hex(KEY_BYTES).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            if made is not None:
                made.append(path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return load_key(path)


def _check_key_private(path: str | os.PathLike[str]) -> None:
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise AuditError(f"audit key {path} is open to other users (mode {mode:04o}); run: chmod 600 {path}")


def _make_dir(path: Path, mode: int, made: list[Path] | None = None) -> None:
    """Create missing directories with `mode`; existing ones are left as they are.
    Those created are appended to `made`, outermost first."""
    if path.is_dir():
        return
    _make_dir(path.parent, mode, made)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    if made is not None:
        made.append(path)
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask


def _remove(made: list[Path]) -> None:
    """Undo what a failed first append created: files, then directories, innermost first."""
    for path in reversed(made):
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            pass


# --- writing ----------------------------------------------------------------------------


class AuditLog:
    """Appends signed entries; touches no file until the first append.

    Appends take an exclusive flock on the log, read its last line under the lock for
    seq and prev, write one line with O_APPEND and fsync before returning, so two
    ebpftop processes never interleave and a returned entry is on disk.
    """

    def __init__(self, path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.key_path = Path(key_path)

    def append(
        self,
        event: str,
        actor: Actor,
        action: Mapping[str, Any],
        *,
        automatic: bool = False,
        ref: int | None = None,
        ok: bool | None = None,
        message: str = "",
    ) -> dict[str, Any]:
        """Write one entry and return it as written. Raises AuditError on any failure."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        if self.path.resolve() == self.key_path.resolve():
            raise AuditError(f"audit log and audit key are the same file ({self.path})")
        try:
            # Round-trip so what is signed is exactly what a reader will parse back
            # (tuples become lists, int dict keys strings).
            action = json.loads(json.dumps(dict(action), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise AuditError(f"action cannot be written to the audit log: {exc}") from None
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            last = _last_line(fd, size, self.path)
            key = self._key(first=last is None)
            seq, prev = self._next(last, key)
            now = time.time()
            entry: dict[str, Any] = {
                "v": FORMAT_VERSION,
                "seq": seq,
                "time": datetime.fromtimestamp(now, UTC)
                .isoformat(timespec="microseconds")
                .replace("+00:00", "Z"),
                "epoch": now,
                "actor": actor.to_dict(),
                "event": event,
                "automatic": bool(automatic),
                "action": action,
                "ref": ref,
                "ok": ok,
                "message": str(message),
                "prev": prev,
            }
            entry["hmac"] = sign(key, entry)
            line = canonical(entry) + b"\n"
            _write_all(fd, line, size, self.path)
            os.fsync(fd)
            return entry
        except OSError as exc:
            raise AuditError(f"cannot write audit log {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)  # also drops the flock

    def _open(self) -> int:
        """The log, opened for appending; a new log only once its key exists.

        The key is made first, since it is the one that fails in practice (a key
        directory that cannot be written); if the log then cannot be made either,
        everything this call created is removed, so a failure leaves nothing behind.
        """
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        made: list[Path] = []
        try:
            try:
                return os.open(self.path, flags)
            except FileNotFoundError:
                pass
            if not self.key_path.exists():
                self._create_key(made)
            _make_dir(self.path.parent, 0o750, made)
            return os.open(self.path, flags | os.O_CREAT, 0o640)
        except OSError as exc:
            _remove(made)
            raise AuditError(f"cannot open audit log {self.path}: {exc.strerror or exc}") from None
        except AuditError:
            _remove(made)
            raise

    def _create_key(self, made: list[Path] | None = None) -> bytes:
        try:
            return create_key(self.key_path, made=made)
        except OSError as exc:
            raise AuditError(f"cannot create audit key {self.key_path}: {exc.strerror or exc}") from None

    def _key(self, *, first: bool) -> bytes:
        if not self.key_path.exists():
            if not first:
                raise AuditError(
                    f"audit key {self.key_path} is missing but {self.path} already has entries; "
                    "restore the key, or move the log aside to start a new one"
                )
            return self._create_key()
        _check_key_private(self.key_path)
        return load_key(self.key_path)

    def _next(self, last: bytes | None, key: bytes) -> tuple[int, str]:
        if last is None:
            return 1, GENESIS
        try:
            obj = json.loads(last)
        except (ValueError, UnicodeDecodeError):
            obj = None
        seq = obj.get("seq") if isinstance(obj, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise AuditError(
                f"the last line of {self.path} is not an audit entry; run `ebpftop audit verify {self.path}`"
            )
        got = obj.get("hmac")
        if not isinstance(got, str) or not hmac.compare_digest(
            got.encode("utf-8", "replace"), sign(key, obj).encode()
        ):
            raise AuditError(
                f"the last entry of {self.path} (seq {seq}) does not verify with key {self.key_path} "
                f"(tampered, or the key changed); run `ebpftop audit verify {self.path}`"
            )
        return seq + 1, line_hash(last)


def _last_line(fd: int, size: int, path: Path) -> bytes | None:
    """The last complete line without its newline; None for an empty log."""
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise AuditError(
            f"{path} ends with an incomplete line (an interrupted write, or the file was cut); "
            f"run `ebpftop audit verify {path}`"
        )
    end = size - 1
    chunk, start = 4096, end
    while start > 0:
        start = max(0, start - chunk)
        nl = os.pread(fd, end - start, start).rfind(b"\n")
        if nl >= 0:
            start += nl + 1
            break
    return os.pread(fd, end - start, start)


def _write_all(fd: int, line: bytes, size: int, path: Path) -> None:
    """One write of the whole line; a short or failed write is cut back off the log."""
    try:
        n = os.write(fd, line)
        if n != len(line):
            raise OSError(errno.ENOSPC, f"short write ({n} of {len(line)} bytes)")
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


# --- reading and verifying ---------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: str  # one of EDITED, REMOVED, REORDERED, DUPLICATED, BAD_SIGNATURE, TRUNCATED, MALFORMED, EMPTY
    line: int  # 1-based line number in the file; 0 when the whole file is the problem
    seq: int | None  # the entry's seq when it could be read
    detail: str


@dataclass(frozen=True)
class Unfinished:
    """An intent no result answers: the action's outcome is unknown."""

    line: int
    seq: int
    action: str  # its kind, as stored (untrusted)

    def __str__(self) -> str:
        return (
            f"line {self.line} (seq {self.seq}): intent {self.action} has no result: its outcome is unknown "
            "(interrupted before it finished, or still running)"
        )


@dataclass(frozen=True)
class VerifyReport:
    path: str
    entries: int  # lines in the file (all of them, bad or not)
    problem: Problem | None = None
    last_seq: int | None = None  # of an intact log: the outside anchor
    last_hash: str | None = None
    unfinished: tuple[Unfinished, ...] = ()  # of an intact log

    @property
    def ok(self) -> bool:
        """The chain is intact (whatever `unfinished` holds)."""
        return self.problem is None

    def summary(self) -> str:
        if self.problem is None:
            anchor = f"(last seq {self.last_seq}, sha256 {self.last_hash})"
            if self.unfinished:
                n = len(self.unfinished)
                return (
                    f"chain intact, but {n} action{'s' if n > 1 else ''} without a result: "
                    f"{self.entries} entries {anchor}"
                )
            return f"OK: {self.entries} entries, chain intact {anchor}"
        p = self.problem
        if p.line == 0:
            return f"{self.path}: {p.kind}: {p.detail}"
        where = f"line {p.line}" + (f" (seq {p.seq})" if p.seq is not None else "")
        return f"{self.path}: first bad entry at {where}: {p.kind}: {p.detail}"


def read_lines(path: str | os.PathLike[str]) -> tuple[list[bytes], bool]:
    """The log's lines (without newlines) and whether the last one was complete."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise AuditError(f"no audit log at {path}") from None
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    if not data:
        return [], True
    lines = data.split(b"\n")
    complete = data.endswith(b"\n")
    if complete:
        lines.pop()
    return lines, complete


def parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def verify(path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> VerifyReport:
    """Check the whole log; report the FIRST bad entry and what is wrong with it.

    Raises AuditError when the log or key is missing or unreadable. How kinds are told
    apart, per line, in this order:
    - not JSON: TRUNCATED if it is the last line and lacks its newline, else MALFORMED;
    - bytes differ from the canonical form of what they parse to: EDITED;
    - HMAC fails: if the next entry's prev is this line's hash (the chain was built on
      these very bytes), or is the hash this line would have with a correct HMAC (only
      the hmac field changed), BAD_SIGNATURE; otherwise EDITED (also for the last entry,
      where nothing after it can tell the two apart);
    - seq is higher than expected: REORDERED if the expected seq turns up later in the
      file, else REMOVED; lower: DUPLICATED if the line repeats an earlier line byte for
      byte, else REORDERED;
    - prev is not the hash of the line before (or 64 zeros on line 1): EDITED (spliced).
    A last line without its newline that passes everything is TRUNCATED.
    """
    key = load_key(key_path)
    lines, complete = read_lines(path)
    path_s = str(path)
    if not lines:
        return VerifyReport(path_s, 0, Problem(EMPTY, 0, None, "the log has no entries"))
    parsed = [parse_line(line) for line in lines]
    hashes = [line_hash(line) for line in lines]
    where_seq: dict[int, list[int]] = {}
    for i, obj in enumerate(parsed):
        seq = _int(obj.get("seq")) if obj is not None else None
        if seq is not None:
            where_seq.setdefault(seq, []).append(i)

    prev_seq, prev_hash = 0, GENESIS
    for i, (raw, obj) in enumerate(zip(lines, parsed, strict=True)):
        problem = _check_line(
            i, raw, obj, lines, parsed, hashes, where_seq, prev_seq, prev_hash, key, complete
        )
        if problem is not None:
            return VerifyReport(path_s, len(lines), problem)
        assert obj is not None  # _check_line reports every line that is not an object
        prev_seq, prev_hash = obj["seq"], hashes[i]
    if not complete:
        return VerifyReport(
            path_s, len(lines), Problem(TRUNCATED, len(lines), prev_seq, "the last entry lacks its newline")
        )
    return VerifyReport(
        path_s,
        len(lines),
        None,
        last_seq=prev_seq,
        last_hash=prev_hash,
        unfinished=_unfinished([e for e in parsed if e is not None]),
    )


def _unfinished(entries: list[dict[str, Any]]) -> tuple[Unfinished, ...]:
    """Intents that no result refers to (entries of an intact log, in order)."""
    answered = {e.get("ref") for e in entries if e.get("event") == "result"}
    out = []
    for n, e in enumerate(entries, 1):
        if e.get("event") == "intent" and e["seq"] not in answered:
            action = e.get("action")
            kind = action.get("kind") if isinstance(action, dict) else None
            out.append(Unfinished(n, e["seq"], kind if isinstance(kind, str) else "(no kind)"))
    return tuple(out)


def _check_line(
    i: int,
    raw: bytes,
    obj: dict[str, Any] | None,
    lines: list[bytes],
    parsed: list[dict[str, Any] | None],
    hashes: list[str],
    where_seq: dict[int, list[int]],
    prev_seq: int,
    prev_hash: str,
    key: bytes,
    complete: bool,
) -> Problem | None:
    n = i + 1
    last = i == len(lines) - 1
    if obj is None:
        if last and not complete:
            return Problem(TRUNCATED, n, None, "the last line is cut off (not complete JSON)")
        what = "an empty line" if not raw else "not a JSON object"
        return Problem(MALFORMED, n, None, f"{what}, not an audit entry")
    seq = _int(obj.get("seq"))
    if raw != canonical(obj):
        return Problem(EDITED, n, seq, "the bytes were changed: the line is not in the form ebpftop writes")

    bad_sig = _signature_problem(i, obj, parsed, hashes, key)
    if bad_sig is not None:
        kind, detail = bad_sig
        return Problem(kind, n, seq, detail)

    if seq is None or not isinstance(obj.get("prev"), str):
        return Problem(MALFORMED, n, seq, "signed, but has no integer seq or no prev")
    expected = prev_seq + 1
    if seq > expected:
        later = [j for j in where_seq.get(expected, ()) if j > i]
        if later:
            return Problem(
                REORDERED, n, seq, f"seq {seq} comes before seq {expected}, which is at line {later[0] + 1}"
            )
        missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
        return Problem(REMOVED, n, seq, f"{missing} missing before this line")
    if seq < expected:
        first = where_seq.get(seq, [i])[0]
        if first < i and lines[first] == raw:
            return Problem(DUPLICATED, n, seq, f"repeats line {first + 1} byte for byte")
        return Problem(REORDERED, n, seq, f"seq goes backwards: {seq} after {prev_seq}")
    if obj["prev"] != prev_hash:
        before = "the genesis value (64 zeros)" if i == 0 else f"the SHA-256 of line {i}"
        return Problem(EDITED, n, seq, f"does not chain: prev is not {before} (entry replaced or spliced in)")
    return None


def _signature_problem(
    i: int, obj: dict[str, Any], parsed: list[dict[str, Any] | None], hashes: list[str], key: bytes
) -> tuple[str, str] | None:
    good = sign(key, obj)
    got = obj.get("hmac")
    if isinstance(got, str) and hmac.compare_digest(got.encode("utf-8", "replace"), good.encode()):
        return None
    nxt = parsed[i + 1] if i + 1 < len(parsed) else None
    nxt_prev = nxt.get("prev") if nxt is not None else None
    if isinstance(nxt_prev, str):
        if nxt_prev == hashes[i]:
            return BAD_SIGNATURE, (
                "the HMAC does not verify although the next entry chains to this exact line: "
                "signed with another key (wrong --key?) or re-signed along with the chain"
            )
        restored = canonical({**obj, "hmac": good})
        if line_hash(restored) == nxt_prev:
            return (
                BAD_SIGNATURE,
                "the content is intact (the next entry's prev matches it) but the hmac field was altered",
            )
        return (
            EDITED,
            "the content was changed: the HMAC does not verify and the next entry's prev no longer matches",
        )
    return EDITED, (
        "the HMAC does not verify: the content was changed or signed with another key "
        "(the last entry: nothing after it tells which)"
    )
