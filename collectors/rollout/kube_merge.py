"""Several kubeconfig files read as one, merged as kubectl merges a `KUBECONFIG` list.

kubectl's rules (k8s.io/client-go/tools/clientcmd, "loading rules"): files that do not
exist are skipped; for clusters, users and contexts the first file to name an entry
wins it whole (later entries of that name are ignored, not merged field by field); the
first file to set current-context wins; a relative path in an entry is relative to the
file the entry came from. An empty or unreadable file that exists is an error naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import ControllerError

SECTIONS = ("clusters", "users", "contexts")


@dataclass(frozen=True)
class Entry:
    """One named cluster, user or context, and the file it came from."""

    name: str
    value: dict[str, Any]
    file: str

    def body(self, key: str) -> dict[str, Any]:
        inner = self.value.get(key) or {}
        if not isinstance(inner, dict):
            raise ControllerError(f"kubeconfig {self.file}: {key} {self.name!r} is not a mapping")
        return inner

    def rel(self, path: object) -> str | None:
        if not path:
            return None
        return str(Path(self.file).parent / os.path.expanduser(str(path)))


@dataclass
class Merged:
    files: list[str]
    current_context: str | None = None
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {s: {} for s in SECTIONS})

    @property
    def shown(self) -> str:
        return os.pathsep.join(self.files)

    def entry(self, section: str, name: object) -> Entry:
        found = self.entries[section].get(str(name)) if name is not None else None
        if found is None:
            raise ControllerError(f"kubeconfig {self.shown}: no entry named {name!r} in {section}")
        return found


def merged(paths: str) -> Merged:
    """Read os.pathsep-separated kubeconfig paths; one path that is missing is an error."""
    names = [os.path.expanduser(p) for p in paths.split(os.pathsep) if p]
    present = [p for p in names if os.path.exists(p)]
    if not present:
        missing = names[0] if len(names) == 1 else paths
        raise ControllerError(f"kubeconfig {missing}: No such file or directory")
    out = Merged(files=present)
    for path in present:
        doc = _read(path)
        if out.current_context is None and doc.get("current-context"):
            out.current_context = str(doc["current-context"])
        for section in SECTIONS:
            items = doc.get(section) or []
            if not isinstance(items, list):
                raise ControllerError(f"kubeconfig {path}: {section} must be a list")
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    out.entries[section].setdefault(item["name"], Entry(item["name"], item, path))
    return out


def _read(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ControllerError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ControllerError(
            f"kubeconfig {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(doc, dict):
        raise ControllerError(f"kubeconfig {path}: not a kubeconfig (expected a mapping at the top)")
    return doc
