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
from dataclasses import dataclass

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


# --- programs: ids, info and the kernel's run-time stats ------------------------------

PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, ENABLE_STATS = 11, 13, 15, 32
STATS_RUN_TIME = 0
# struct bpf_prog_info (include/uapi/linux/bpf.h): the offsets read below. The kernel
# fills at most what it knows and we ask for, so an older kernel leaves the rest zero.
_INFO_SIZE = 232
_PROG_TYPES = {
    1: "socket",
    2: "kprobe",
    3: "tc",
    4: "tc act",
    5: "tracepoint",
    6: "xdp",
    7: "perf_event",
    8: "cgroup skb",
    9: "cgroup sock",
    13: "sock_ops",
    14: "sk_skb",
    15: "cgroup dev",
    16: "sk_msg",
    17: "raw_tp",
    18: "cgroup addr",
    23: "flow dissector",
    24: "cgroup sysctl",
    26: "tracing",
    27: "struct_ops",
    28: "ext",
    29: "lsm",
    30: "sk_lookup",
    31: "syscall",
    32: "netfilter",
}


class _IdsAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def obj_info(fd: int, size: int = 256) -> bytes:
    """BPF_OBJ_GET_INFO_BY_FD: the object's info struct, zero-padded to `size` bytes."""
    buf = ctypes.create_string_buffer(size)
    attr = _InfoAttr(fd, size, ctypes.addressof(buf))
    bpf(OBJ_GET_INFO_BY_FD, attr)
    return buf.raw


def prog_ids() -> list[int]:
    """Every BPF program loaded on the host, by id (it may be gone by the time it is opened)."""
    out: list[int] = []
    attr = _IdsAttr()
    while True:
        try:
            bpf(PROG_GET_NEXT_ID, attr)
        except BpfError:
            return out  # ENOENT: no more
        out.append(attr.next_id)
        attr = _IdsAttr(id=attr.next_id)


def prog_fd(prog_id: int) -> int:
    """An fd for the program with this id (the caller closes it); BpfError when gone."""
    return bpf(PROG_GET_FD_BY_ID, _IdsAttr(id=prog_id))


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: str  # "tc", "tracepoint", "perf_event"... or the type's number
    name: str  # as the loader set it, at most 15 bytes; untrusted
    run_time_ns: int  # counted only while run-time stats are on (enable_stats)
    run_cnt: int


def prog_info(fd: int) -> ProgInfo:
    raw = obj_info(fd, _INFO_SIZE)

    def u(off: int, size: int = 4) -> int:
        return int.from_bytes(raw[off : off + size], "little")

    kind = u(0)
    return ProgInfo(
        id=u(4),
        type=_PROG_TYPES.get(kind, str(kind)),
        name=raw[64:80].split(b"\0", 1)[0].decode(errors="replace"),
        run_time_ns=u(192, 8),
        run_cnt=u(200, 8),
    )


def prog_info_by_id(prog_id: int) -> ProgInfo | None:
    """The program's info, or None when it is gone (or not ours to open)."""
    try:
        fd = prog_fd(prog_id)
    except BpfError:
        return None
    try:
        return prog_info(fd)
    except BpfError:
        return None
    finally:
        os.close(fd)


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel counts run time and runs of every
    program on the host for as long as the returned fd is open (closing it, or the
    process dying, turns them off again). Independent of sysctl kernel.bpf_stats_enabled,
    which is never touched: a second switch someone else may hold."""
    return bpf(ENABLE_STATS, STATS_RUN_TIME.to_bytes(4, "little"))
