"""Every setting ebpftop has, with its default and what it means.

Loading (files, EBPFTOP_* environment, flags, precedence and errors) lives in
`config.py`; this module only declares. A field's docstring-comment is the user-facing
description (`ebpftop --help-config` prints them).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    # [ui]
    theme: str = "ebpftop-dark"
    """Theme name: ebpftop-dark, ebpftop-light, ebpftop-high-contrast, ebpftop-kiosk."""
    kiosk: bool = False
    """Read-only wall display: no action can run, no suspend, title says READ-ONLY."""
    refresh: float = 1.0
    """Seconds between samples of each collector."""
    history: int = 300
    """Samples kept per source for charts and step-back (memory stays bounded)."""

    # [record]
    record: str | None = None
    """Append everything the bus carries to this file."""
    record_max_mb: float = 256.0
    """Stop recording (with a message) when the file reaches this size."""

    # [audit]
    audit_log: str = "/var/log/ebpftop/audit.jsonl"
    """Append-only, hash-chained, HMAC-signed log of every action."""
    audit_key: str = "/var/lib/ebpftop/audit.key"
    """HMAC key for the audit log; created on first use, readable by root only."""

    # [flows]
    ifaces: tuple[str, ...] = field(default_factory=tuple)
    """Interfaces to watch; empty means every interface that is up."""

    # [canary]
    prometheus_url: str | None = None
    """Prometheus HTTP API base URL, e.g. http://127.0.0.1:9090."""

    # [lab]
    lab: bool = False
    """Open the dashboard wired to `ebpftop lab` (bringing it up when it is not)."""
