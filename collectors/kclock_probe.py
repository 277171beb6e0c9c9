"""(jiffies, CLOCK_MONOTONIC ns) read together by the kernel itself, for hosts where
/proc/timer_list is not readable (container runtimes mask it: a DaemonSet's pod cannot
unmask it without `privileged`).

A 15-instruction TC program, run once with BPF_PROG_TEST_RUN (never attached): it calls
bpf_jiffies64() then bpf_ktime_get_ns() and stores both in a one-slot array that user
space reads. Assembled here rather than written in C beside a loader: it is the fallback
of a calibration that runs before anything is compiled, and needs no clang or headers.
Both helpers need CAP_BPF (or root), as the TC programs whose clock it calibrates do.
"""

from __future__ import annotations

import ctypes
import os
import struct

from .bpfsys import bpf

MAP_CREATE, MAP_LOOKUP_ELEM, PROG_LOAD, PROG_TEST_RUN = 0, 1, 5, 10
MAP_TYPE_ARRAY, PROG_TYPE_SCHED_CLS = 2, 3
FUNC_MAP_UPDATE_ELEM, FUNC_KTIME_GET_NS, FUNC_JIFFIES64 = 2, 5, 118
PSEUDO_MAP_FD = 1
R0, R1, R2, R3, R4, R10 = 0, 1, 2, 3, 4, 10


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(map_fd: int) -> bytes:
    call, exit_ = 0x85, 0x95
    stx_dw, st_w = 0x7B, 0x62
    mov64_x, mov64_k, add64_k, ld_imm64 = 0xBF, 0xB7, 0x07, 0x18
    return b"".join(
        (
            _insn(call, imm=FUNC_JIFFIES64),
            _insn(stx_dw, R10, R0, -8),  # value[8:16] = jiffies
            _insn(call, imm=FUNC_KTIME_GET_NS),
            _insn(stx_dw, R10, R0, -16),  # value[0:8] = monotonic ns
            _insn(st_w, R10, off=-20, imm=0),  # key = 0
            _insn(ld_imm64, R1, PSEUDO_MAP_FD, imm=map_fd),
            _insn(0),
            _insn(mov64_x, R2, R10),
            _insn(add64_k, R2, imm=-20),
            _insn(mov64_x, R3, R10),
            _insn(add64_k, R3, imm=-16),
            _insn(mov64_k, R4, imm=0),
            _insn(call, imm=FUNC_MAP_UPDATE_ELEM),
            _insn(mov64_k, R0, imm=0),
            _insn(exit_),
        )
    )


def sample() -> tuple[int, int]:
    """(jiffies, monotonic ns), as the kernel read them one after the other. Raises OSError."""
    map_fd = bpf(MAP_CREATE, struct.pack("<IIII", MAP_TYPE_ARRAY, 4, 16, 1))
    prog_fd = -1
    try:
        code = ctypes.create_string_buffer(program(map_fd))
        license_ = ctypes.create_string_buffer(b"GPL")
        attr = struct.pack(
            "<IIQQ",
            PROG_TYPE_SCHED_CLS,
            len(code.raw) // 8,
            ctypes.addressof(code),
            ctypes.addressof(license_),
        )
        prog_fd = bpf(PROG_LOAD, attr)
        packet = ctypes.create_string_buffer(64)  # an empty Ethernet frame: the program reads none of it
        bpf(PROG_TEST_RUN, struct.pack("<IIIIQQ", prog_fd, 0, 64, 0, ctypes.addressof(packet), 0))
        key = ctypes.c_uint32(0)
        value = ctypes.create_string_buffer(16)
        bpf(MAP_LOOKUP_ELEM, struct.pack("<IIQQ", map_fd, 0, ctypes.addressof(key), ctypes.addressof(value)))
        mono, jiffies = struct.unpack("<QQ", value.raw)
        if not mono or not jiffies:
            raise OSError("the clock probe ran but stored nothing")
        return jiffies, mono
    finally:
        if prog_fd >= 0:
            os.close(prog_fd)
        os.close(map_fd)
