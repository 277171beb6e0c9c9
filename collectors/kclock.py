"""The clock the TC programs (flows, rules) keep time with: jiffies.

They read `bpf_jiffies64()`, which the verifier inlines into one load; the ktime
helpers are real calls (~35 ns each on this VM, a third of the per-packet budget).
So first/last-seen times, TTL expiries and last-hit times in the maps are jiffies, and user space
converts with HZ and one (jiffies, CLOCK_MONOTONIC) pair (from /proc/timer_list, or where
a container runtime masks it, from a BPF test run: kclock_probe.py). Both are read once per
process: jiffies advance from the monotonic clock, one tick per 1/HZ s, and do not drift
from it. Resolution: one tick (4 ms at HZ=250).
"""

from __future__ import annotations

import gzip
import os
import re
import time
from functools import lru_cache

TIMER_LIST = "/proc/timer_list"
_HZ_CHOICES = (100, 250, 300, 1000)


def _config_hz() -> int | None:
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            continue
    return None


def _sample() -> tuple[int, int]:
    """(jiffies, monotonic ns) read together: from /proc/timer_list, else (masked in
    containers) by the kernel itself through a BPF test run (kclock_probe.py)."""
    try:
        return _timer_list()
    except OSError as first:
        from . import kclock_probe

        try:
            return kclock_probe.sample()
        except OSError as exc:
            raise OSError(f"{first}; the BPF clock probe failed too: {exc.strerror or exc}") from None


def _timer_list() -> tuple[int, int]:
    with open(TIMER_LIST) as f:
        text = f.read()
    now = re.search(r"^now at (\d+) nsecs", text, re.M)
    jif = re.search(r"^jiffies: (\d+)", text, re.M)
    if not (now and jif):
        raise OSError(f"{TIMER_LIST}: no 'now at' or 'jiffies:' line")
    return int(jif.group(1)), int(now.group(1))


@lru_cache(maxsize=1)
def calibration() -> tuple[int, int, int]:
    """(HZ, jiffies, monotonic ns at which jiffies last ticked over)."""
    hz = _config_hz()
    try:
        j0, m0 = _sample()
        if hz is None:  # no kernel config: measure (200 ms tells 100, 250, 300 and 1000 apart)
            time.sleep(0.2)
            j1, m1 = _sample()
            rate = (j1 - j0) * 1e9 / max(1, m1 - m0)
            hz = min(_HZ_CHOICES, key=lambda h: abs(h - rate))
    except OSError as exc:
        raise OSError(
            f"cannot relate the kernel's jiffies to the monotonic clock ({exc}); "
            "flow times, rule TTLs and last-hit times need /proc/timer_list or bpf(2) test runs"
        ) from None
    return hz, j0, m0


def hz() -> int:
    return calibration()[0]


def jiffies_at(mono_ns: int) -> int:
    """The jiffies value the kernel shows at CLOCK_MONOTONIC time `mono_ns`."""
    h, j0, m0 = calibration()
    return j0 + (mono_ns - m0) * h // 1_000_000_000


def mono_of(jiffies: int) -> int:
    """CLOCK_MONOTONIC ns at which the kernel's jiffies reached `jiffies`."""
    h, j0, m0 = calibration()
    return m0 + (jiffies - j0) * 1_000_000_000 // h
