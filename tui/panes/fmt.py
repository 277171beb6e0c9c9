"""Number formatting shared by the panes: compact, fixed-ish width, "—" for no data.

No data (None, NaN) is never shown as 0: an operator must be able to tell "nothing
happened" from "we do not know".
"""

from __future__ import annotations

import math

NO_DATA = "—"

# a run of text with its style, or plain text: what Content.assemble takes
Part = tuple[str, str] | str


def _finite(value: float | None) -> float | None:
    """The value, or None when missing (None, NaN, infinite)."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def size(n: float | None, suffix: str = "B") -> str:
    """Binary units: 1536 -> '1.5 KiB'."""
    v = _finite(n)
    if v is None:
        return NO_DATA
    n = float(v)
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if abs(n) < 1024 or unit == "Pi":
            return f"{n:.0f} {unit}{suffix}" if unit == "" else f"{n:.1f} {unit}{suffix}"
        n /= 1024
    return NO_DATA  # unreachable


def rate(bytes_per_s: float | None) -> str:
    return NO_DATA if _finite(bytes_per_s) is None else size(bytes_per_s, "B/s")


def percent(p: float | None) -> str:
    v = _finite(p)
    return NO_DATA if v is None else f"{v:.0f}%"


def duration(seconds: float | None) -> str:
    """Coarse human duration: '42s', '5m', '3h12m', '4d7h'."""
    v = _finite(seconds)
    if v is None:
        return NO_DATA
    s = int(max(0.0, v))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def age(seconds: float | None) -> str:
    """`duration` in steps that change at most every 10 s: '7s', '20s', '1m10s'. For
    ages that tick on screen: an exact count of seconds is noise there, and each
    change is a repaint (a wall display runs for weeks)."""
    v = _finite(seconds)
    if v is None:
        return NO_DATA
    s = int(max(0.0, v))
    return duration(s if s < 10 else s - s % 10)


def number(x: float | None) -> str:
    """Counts and plain numbers: 1234567 -> '1.2M'."""
    if x is None or _finite(x) is None:
        return NO_DATA
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or float(x).is_integer():
        n = int(x)
        for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
            if abs(n) >= div * 10:
                return f"{n / div:.1f}{unit}"
        return str(n)
    return f"{x:.3g}"
