"""The raw bpf(2) syscall, for what bcc 0.26 cannot do (tcx links, pins, probes).

One place holds the syscall numbers and the errno handling; callers define the
`union bpf_attr` part they need as a ctypes object (or pass bytes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}

ATTR_SIZE = 128  # union bpf_attr is larger than any one command's part; the rest is zeroed

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class BpfError(OSError):
    """A bpf(2) command failed; `errno` is the kernel's answer."""


def bpf(cmd: int, attr) -> int:
    """bpf(cmd, attr): `attr` is a ctypes object (passed by reference) or bytes
    (zero-padded to ATTR_SIZE). Returns the result (an fd for most commands)."""
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(0, f"bpf(2) syscall number unknown on {platform.machine()}")
    if isinstance(attr, (bytes, bytearray)):
        buf = ctypes.create_string_buffer(bytes(attr).ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
        ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(ATTR_SIZE))
    else:
        ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret
