"""What ebpftop rolled back on HAProxy, kept on disk: undo restores it, and the rollout
source raises an alarm when a reload (or anyone) puts the canary back in traffic.

One JSON file beside the audit key (`memory_path`), so a dashboard, `snapshot --json`
and the next start all know the same rollbacks, and a test or an install with its own
audit key has its own memory. Per HAProxy backend: the weight and admin state each
server had before ebpftop's rollback changed it, when, and when the canary was first
seen taking traffic again. Every update is read-modify-rename under a lock, so two
ebpftop processes never lose each other's entries, and "first seen" is decided once:
that process writes the one audit entry saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ebpftop.core.audit import Actor, AuditError, AuditLog

from .base import ControllerError

log = logging.getLogger(__name__)

FILE_NAME = "rollbacks.json"
REVERTED_KIND = "rollout.reverted"


@dataclass(frozen=True)
class Before:
    """One server as it was before the rollback changed it."""

    name: str
    weight: int
    admin: str  # ready / drain / maint when the rollback changed it too, else ""


@dataclass(frozen=True)
class Remembered:
    service: str
    address: str  # the runtime API address the rollback went to
    backend: str
    before: tuple[Before, ...]
    at: float  # wall clock of the rollback
    reverted_at: float | None = None  # wall clock the canary was first seen back in traffic

    def restores(self) -> str:
        """What undo sets, in one line: "canary weight 10"."""
        return ", ".join(
            f"{b.name} weight {b.weight}" + (f" and {b.admin}" if b.admin else "") for b in self.before
        )


def memory_path(audit_key: str) -> Path:
    return Path(audit_key).parent / FILE_NAME


class RollbackMemory:
    def __init__(self, path: str | os.PathLike[str], audit: AuditLog | None = None) -> None:
        self.path = Path(path)
        self._audit = audit

    @classmethod
    def from_settings(cls, settings: Any) -> RollbackMemory:
        return cls(memory_path(settings.audit_key), AuditLog(settings.audit_log, settings.audit_key))

    def find(self, address: str, backend: str) -> Remembered | None:
        """The rollback on record for this backend. Raises ControllerError naming the file."""
        return next((r for r in self._load() if (r.address, r.backend) == (address, backend)), None)

    def remember(self, entry: Remembered) -> None:
        """Replace what is on record for the entry's backend. Raises ControllerError."""
        self._update(
            lambda rs: [r for r in rs if (r.address, r.backend) != (entry.address, entry.backend)] + [entry]
        )

    def forget(self, address: str, backend: str) -> None:
        self._update(lambda rs: [r for r in rs if (r.address, r.backend) != (address, backend)])

    def seen_reverted(
        self, entry: Remembered, now: float, describe: Callable[[Remembered], str]
    ) -> Remembered:
        """The entry with `reverted_at` set: the time on record when another process saw
        it first, else `now`, saved, and audited once (`describe` says what was seen)."""
        found: list[tuple[Remembered, bool]] = []

        def mark(rs: list[Remembered]) -> list[Remembered]:
            out = []
            for r in rs:
                if (r.address, r.backend, r.at) == (entry.address, entry.backend, entry.at):
                    first = r.reverted_at is None
                    r = replace(r, reverted_at=now) if first else r
                    found.append((r, first))
                out.append(r)
            return out

        self._update(mark)
        if not found:  # forgotten meanwhile (an undo): nothing left to mark
            return replace(entry, reverted_at=now)
        marked, first = found[0]
        if first:
            self._audit_reverted(marked, describe(marked))
        return marked

    def _audit_reverted(self, entry: Remembered, text: str) -> None:
        if self._audit is None:
            return
        record = {
            "kind": REVERTED_KIND,
            "title": f"Rollback of {entry.service} reverted",
            "description": text,
            "target": entry.service,
            "params": {**asdict(entry)},
            "dangerous": False,
        }
        try:
            self._audit.append("observed", Actor.current(), record, automatic=True, message=text)
        except AuditError as exc:
            log.warning("reverted rollback of %s not audited: %s", entry.service, exc)

    # --- the file --------------------------------------------------------------------

    def _load(self) -> list[Remembered]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ControllerError(f"rollback memory {self.path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
            return [_entry(e) for e in doc["rollbacks"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ControllerError(
                f"rollback memory {self.path} is damaged ({type(exc).__name__}: {exc}); "
                "remove it to forget the rollbacks on record"
            ) from None

    def _update(self, change: Callable[[list[Remembered]], list[Remembered]]) -> None:
        try:
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            with self._locked():
                entries = change(self._load())
                doc = {"version": 1, "rollbacks": [asdict(r) for r in entries]}
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".rollbacks-")
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump(doc, f, indent=1)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except OSError as exc:
            raise ControllerError(f"rollback memory {self.path}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _entry(e: dict[str, Any]) -> Remembered:
    before = tuple(Before(str(b["name"]), int(b["weight"]), str(b["admin"])) for b in e["before"])
    reverted = e.get("reverted_at")
    return Remembered(
        str(e["service"]),
        str(e["address"]),
        str(e["backend"]),
        before,
        float(e["at"]),
        None if reverted is None else float(reverted),
    )
