"""Compile flows.bpf.c, attach it to interfaces, read its map in batches.

Every attachment has one owner, this object: `detach`/`close` remove it. With tcx
the kernel also removes it when the process dies (even SIGKILL); with netlink TC the
next start removes what a dead ebpftop left (see tclegacy).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tclegacy, tcx
from .table import FlowTable

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
FLOWS_SRC = HERE / "flows.bpf.c"
CNT_INSERTS, CNT_UPDATE_FAILED, CNT_NOT_IP, CNT_TRUNCATED = range(4)
CNT_MAX = 4  # flows.h

# /sys/class/net/X/type: these carry no link-layer header in front of IP.
_L3_TYPES = {65534, 776, 778}  # ARPHRD_NONE (tun, wireguard), ARPHRD_SIT, ARPHRD_IPGRE


@dataclass
class Attachment:
    iface: str
    ifindex: int
    mode: str  # "tcx" | "tc"
    handles: list[Any]  # link fds (tcx) or TcFilter (tc)


def ifindex_of(name: str) -> int | None:
    """In this network namespace; None when there is no such interface. (One ioctl: the
    collector asks every tick whether its interfaces are still there.)"""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError):  # ValueError: a name with a NUL byte
        return None


def link_type(name: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{name}/type").read_text())
    except (OSError, ValueError):
        return 1


def up_interfaces() -> list[str]:
    """Interfaces whose link is up (IFF_UP), in ifindex order."""
    out = []
    for name in os.listdir("/sys/class/net"):
        try:
            flags = int(Path(f"/sys/class/net/{name}/flags").read_text(), 16)
        except (OSError, ValueError):
            continue
        if flags & 0x1:
            out.append(name)
    return sorted(out, key=lambda n: ifindex_of(n) or 0)


class FlowsDatapath:
    def __init__(self, max_flows: int = 131072, mode: str = "auto") -> None:
        if mode not in ("auto", "tcx", "tc"):
            raise ValueError(f"attach mode must be auto, tcx or tc, not {mode!r}")
        self.max_flows = max_flows
        self.mode = mode
        self.bpf: Any = None  # bcc.BPF: bcc ships no type information
        self._progs: dict[str, Any] = {}  # bcc.BPF.Function by name
        self.attachments: dict[str, Attachment] = {}
        self.deleted = 0  # entries we removed ourselves (idle expiry)
        self._batch_ok = True
        self._bufs: dict[str, tuple[Any, Any]] = {}  # map name -> (key, value) buffers of the batch reads
        self._ncpus: int | None = None
        # Netlink filters outlive the process: detach them on any orderly interpreter
        # exit too, even when nobody called close() (tcx links need no help).
        atexit.register(self.close)

    # --- lifecycle -------------------------------------------------------------------

    def compile(self) -> None:
        from bcc import BPF

        from ..bpfcompile import COMPILE_LOCK, yielding

        with COMPILE_LOCK, yielding():  # not thread-safe; at a lower priority (bpfcompile.py)
            self.bpf = BPF(
                src_file=str(FLOWS_SRC).encode(),
                cflags=[f"-I{HERE}", f"-DMAX_FLOWS={self.max_flows}", "-Wno-unused-function"],
            )
        for name in ("ebpftop_fl_in", "ebpftop_fl_eg", "ebpftop_fl3_in", "ebpftop_fl3_eg"):
            self._progs[name] = self.bpf.load_func(name, BPF.SCHED_CLS)
        self.flows = self.bpf["flows"]
        self.counters = self.bpf["counters"]

    def effective_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "tcx" if tcx.supported() else "tc"

    def prog_ids(self) -> list[int]:
        return [tcx.prog_id_of_fd(f.fd) for f in self._progs.values()]

    def attach(self, iface: str) -> Attachment:
        """Attach both directions; on any failure nothing stays attached."""
        if iface in self.attachments:
            return self.attachments[iface]
        ifindex = ifindex_of(iface)
        if ifindex is None:
            raise OSError(errno.ENODEV, f"no interface named {iface!r}")
        l3 = link_type(iface) in _L3_TYPES
        progs = [
            self._progs["ebpftop_fl3_in" if l3 else "ebpftop_fl_in"],
            self._progs["ebpftop_fl3_eg" if l3 else "ebpftop_fl_eg"],
        ]
        mode = self.effective_mode()
        handles: list[Any] = []
        try:
            for prog, ingress in zip(progs, (True, False), strict=True):
                if mode == "tcx":
                    handles.append(tcx.attach(prog.fd, ifindex, ingress))
                else:
                    handles.append(tclegacy.attach(prog.fd, tcx.prog_id_of_fd(prog.fd), iface, ingress))
        except BaseException:
            self._release(Attachment(iface, ifindex, mode, handles))
            raise
        att = Attachment(iface, ifindex, mode, handles)
        self.attachments[iface] = att
        return att

    def _release(self, att: Attachment) -> None:
        for h in att.handles:
            try:
                if att.mode == "tcx":
                    tcx.detach(h)
                else:
                    tclegacy.detach(h)
            except Exception:
                log.warning("detaching %s from %s failed", att.mode, att.iface, exc_info=True)

    def detach(self, iface: str) -> None:
        att = self.attachments.pop(iface, None)
        if att is not None:
            self._release(att)

    def close(self) -> None:
        for iface in list(self.attachments):
            self.detach(iface)
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
        atexit.unregister(self.close)

    # --- reading ---------------------------------------------------------------------

    def counters_total(self) -> list[int]:
        """Kernel counters summed over CPUs (CNT_* order), in one syscall."""
        from bcc.utils import get_possible_cpus

        if self._ncpus is None:
            self._ncpus = len(get_possible_cpus())
        if self._batch_ok:
            try:
                _, vraw = self._lookup_batch(self.counters.map_fd, 4, 8 * self._ncpus, CNT_MAX, "counters")
                per_cpu = memoryview(vraw).cast("Q")
                return [sum(per_cpu[i * self._ncpus : (i + 1) * self._ncpus]) for i in range(CNT_MAX)]
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, 524):  # 524: ENOTSUPP
                    raise
                self._batch_ok = False
        return [sum(int(v) for v in self.counters.getvalue(self.counters.Key(i))) for i in range(CNT_MAX)]

    def read(self) -> FlowTable:
        """Every flow in the map, by column."""
        if self._batch_ok:
            try:
                return self._read_batch()
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, 524):  # 524: ENOTSUPP
                    raise
                self._batch_ok = False  # kernel older than 5.6: one syscall per key
        keys, vals = [], []
        for k, v in self.flows.items():
            keys.append(bytes(k))
            vals.append(bytes(v))
        return FlowTable.from_raw(b"".join(keys), b"".join(vals))

    def _read_batch(self) -> FlowTable:
        from .layout import FLOW_KEY, FLOW_VAL

        return FlowTable.from_raw(
            *self._lookup_batch(self.flows.map_fd, FLOW_KEY.size, FLOW_VAL.size, self.max_flows, "flows")
        )

    def _lookup_batch(self, fd: int, ks: int, vs: int, n: int, name: str) -> tuple[bytes, bytes]:
        """BPF_MAP_LOOKUP_BATCH over the whole map into buffers made once per map:
        (keys, values) as read, packed."""
        from bcc import libbcc

        if name not in self._bufs:
            self._bufs[name] = (ctypes.create_string_buffer(ks * n), ctypes.create_string_buffer(vs * n))
        kbuf, vbuf = self._bufs[name]
        token = ctypes.c_uint32(0)
        count = ctypes.c_uint32(0)
        total = 0
        while total < n:
            count.value = n - total
            res = libbcc.lib.bpf_lookup_batch(
                fd,
                ctypes.byref(token) if total else None,
                ctypes.byref(token),
                ctypes.byref(kbuf, ks * total),
                ctypes.byref(vbuf, vs * total),
                ctypes.byref(count),
            )
            err = ctypes.get_errno()
            total += count.value
            if res != 0:
                if err == errno.ENOENT or (res < 0 and -res == errno.ENOENT):
                    break
                code = err or -res
                raise OSError(code, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(code)}")
            if count.value == 0:
                break
        # string_at copies what was read (.raw would copy the whole buffer)
        return ctypes.string_at(kbuf, ks * total), ctypes.string_at(vbuf, vs * total)

    def delete(self, keys: list[bytes]) -> int:
        """Remove entries (idle expiry); returns how many went."""
        gone = 0
        for raw in keys:
            try:
                del self.flows[self.flows.Key.from_buffer_copy(raw)]
                gone += 1
            except KeyError:
                pass
        self.deleted += gone
        return gone
