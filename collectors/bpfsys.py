"""The raw bpf(2) syscall, for what bcc 0.26 cannot do (tcx links, pins, probes).

One place holds the syscall numbers and the errno handling; callers define the
`union bpf_attr` part they need as a ctypes object (or pass bytes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import time

SYS_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "arm64": 280,
    "armv7l": 386,
    "ppc64le": 361,
    "s390x": 351,
    "riscv64": 280,
}
SYS_MEMBARRIER = {
    "x86_64": 324,
    "aarch64": 283,
    "arm64": 283,
    "armv7l": 389,
    "ppc64le": 365,
    "s390x": 356,
    "riscv64": 283,
}
MEMBARRIER_CMD_GLOBAL = 1

ATTR_SIZE = 128  # union bpf_attr is larger than any one command's part; the rest is zeroed

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class BpfError(OSError):
    """A bpf(2) command failed; `errno` is the kernel's answer."""


def bpf(cmd: int, attr: ctypes.Structure | ctypes.Union | bytes | bytearray) -> int:
    """bpf(cmd, attr): `attr` is a ctypes object (passed by reference) or bytes
    (zero-padded to ATTR_SIZE). Returns the result (an fd for most commands)."""
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(0, f"bpf(2) syscall number unknown on {platform.machine()}")
    if isinstance(attr, (bytes, bytearray)):
        buf = ctypes.create_string_buffer(bytes(attr).ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
        ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(ATTR_SIZE))
    else:
        ret = _libc.syscall(
            ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
        )
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return int(ret)


def wait_for_programs() -> None:
    """Return once every BPF program run that began before the call has ended.

    Programs run inside RCU read-side sections (softirq or rcu_read_lock), and
    membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(). Where it is refused
    (nohz_full, an old kernel), a pause far longer than any program run stands in."""
    nr = SYS_MEMBARRIER.get(platform.machine())
    if (
        nr is not None
        and _libc.syscall(
            ctypes.c_long(nr), ctypes.c_int(MEMBARRIER_CMD_GLOBAL), ctypes.c_int(0), ctypes.c_int(0)
        )
        == 0
    ):
        return
    time.sleep(0.05)
