"""Rule metadata on disk: one JSON file per kernel set (`set-a.json`, `set-b.json`),
written (temporary file, sync, rename) while the set is inactive and carrying its
generation, so the active set's file always describes what the kernel enforces.
`lock` (flock) allows one writer at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .spec import Match, Rule

VERSION = 1


@dataclass
class SetState:
    gen: int = 0
    next_id: int = 1
    rules: list[Rule] = field(default_factory=list)


class StateError(ValueError):
    pass


def rule_to_dict(r: Rule) -> dict[str, Any]:
    m = r.match
    return {
        "id": r.id,
        "action": r.action,
        "proto": m.proto,
        "src": m.src,
        "dst": m.dst,
        "sport": list(m.sport) if m.sport else None,
        "dport": list(m.dport) if m.dport else None,
        "iface": m.iface,
        "direction": m.direction,
        "ttl": r.ttl,
        "comment": r.comment,
        "author": r.author,
        "created": r.created,
        "expires": r.expires,
        "slot": r.slot,
        "session": r.session,
    }


def rule_from_dict(d: dict[str, Any]) -> Rule:
    match = Match(
        proto=d["proto"],
        src=d.get("src"),
        dst=d.get("dst"),
        sport=tuple(d["sport"]) if d.get("sport") else None,
        dport=tuple(d["dport"]) if d.get("dport") else None,
        iface=d.get("iface"),
        direction=d.get("direction"),
    )
    return Rule(
        action=d["action"],
        match=match,
        ttl=d.get("ttl"),
        comment=d.get("comment", ""),
        id=int(d["id"]),
        author=d.get("author", ""),
        created=float(d.get("created", 0)),
        expires=d.get("expires"),
        slot=int(d["slot"]),
        session=int(d.get("session", 0)),
    )


class StateDir:
    def __init__(self, path: str) -> None:
        self.path = path

    def file(self, set_name: str) -> str:
        return os.path.join(self.path, f"set-{set_name}.json")

    @contextlib.contextmanager
    def lock(self, shared: bool = False) -> Iterator[None]:
        """Exclusive: a change. Shared: a reading that must not see half of one; with no
        state yet it takes no lock and creates nothing (there is nothing to read)."""
        path = os.path.join(self.path, "lock")
        if shared:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                yield
                return
        else:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self, set_name: str) -> SetState | None:
        path = self.file(set_name)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{path}: unreadable rule metadata: {exc}") from None
        try:
            if doc.get("version") != VERSION:
                raise StateError(f"{path}: version {doc.get('version')!r}, expected {VERSION}")
            return SetState(int(doc["gen"]), int(doc["next_id"]), [rule_from_dict(d) for d in doc["rules"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: malformed rule metadata ({type(exc).__name__}: {exc})") from None

    def write(self, set_name: str, state: SetState) -> None:
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        doc = {
            "version": VERSION,
            "gen": state.gen,
            "next_id": state.next_id,
            "rules": [rule_to_dict(r) for r in state.rules],
        }
        path = self.file(set_name)
        tmp = f"{path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(doc, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove(self) -> list[str]:
        gone = []
        for name in ("set-a.json", "set-b.json", "lock"):
            p = os.path.join(self.path, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
                gone.append(p)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.path):
                if ".tmp." in name:
                    os.unlink(os.path.join(self.path, name))
            os.rmdir(self.path)
        return gone
