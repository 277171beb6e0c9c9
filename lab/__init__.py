"""`ebpftop lab`: a small real system on one machine (see README.md in this directory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ebpftop.core.settings import Settings


def lab_settings(settings: Settings, **kwargs: Any) -> Settings:
    """`settings` wired to the lab, bringing it up first; see `manager.lab_settings`."""
    # Imported on call: the load generator starts from this package
    # and should not pay for the manager's imports.
    from .manager import lab_settings as wire

    return wire(settings, **kwargs)
