"""The BPF CPU sampler: perf_event at a fixed frequency on every CPU, stacks counted in
the kernel (sampler.bpf.c), drained and symbolised here.

Blocking throughout (compile, map reads, symbol lookups): the collector calls it from
a thread. One owner: `close()` detaches the perf events and frees the program and maps,
and is safe to call twice; perf_event attachments also die with the process.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import pathlib
import threading
import time
from dataclasses import dataclass

from .symbols import Symbols

SOURCE = pathlib.Path(__file__).with_name("sampler.bpf.c")
FN_NAME = "ebpftop_cpu"  # what `bpftool prog` shows; tests look for it
KERNEL_SUFFIX = "_[k]"  # flame graph convention for kernel frames
LOST_STACK = "[stack lost]"
MAX_KERNEL_NAMES = 100_000  # kernel addresses named before that cache starts over


class SamplerUnavailable(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class RawStack:
    tgid: int
    comm: str
    frames: tuple[str, ...]  # root first: user frames, then kernel frames
    count: int


class Sampler:
    def __init__(self, hz: int = 49, *, max_keys: int = 10240, stack_slots: int = 16384,
                 skip_tgid: int = 0) -> None:
        if not 1 <= hz <= 1000:
            raise ValueError(f"sampling frequency must be 1..1000 Hz, not {hz}")
        self.hz = hz
        self.max_keys = max_keys
        self.stack_slots = stack_slots
        self.skip_tgid = skip_tgid
        self._bpf = None
        self._seen: dict[int, float] = {}  # tgid -> last drain it appeared in
        # bcc's own lookup costs ~50 us a frame; hot stacks repeat every second.
        self._symbols = Symbols()
        self._knames: dict[int, str] = {}  # kernel addr -> name
        self._kstacks: dict[tuple[int, ...], tuple[str, ...]] = {}
        self._last_prune = time.monotonic()
        # drain() runs in a worker thread; close() must not free the maps under it.
        self._mutex = threading.Lock()

    @property
    def running(self) -> bool:
        return self._bpf is not None

    def start(self) -> None:
        with self._mutex:
            self._start()

    def _start(self) -> None:
        if self._bpf is not None:
            return
        if os.geteuid() != 0:
            raise SamplerUnavailable("the BPF CPU sampler needs root", "run `sudo ebpftop`, or give --pprof URL for pprof only")
        try:
            from bcc import BPF, PerfSWConfig, PerfType
        except ImportError as exc:
            raise SamplerUnavailable(f"bcc does not import ({exc})", "install python3-bpfcc (scripts/setup.sh)") from None
        from ..bpfcompile import COMPILE_LOCK

        cflags = [f"-DMAX_KEYS={self.max_keys}", f"-DSTACK_SLOTS={self.stack_slots}",
                  f"-DSKIP_TGID={int(self.skip_tgid)}"]
        try:
            with COMPILE_LOCK:  # libbcc/LLVM is not thread-safe (see bpfcompile.py)
                b = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/load failure
            raise SamplerUnavailable(f"BPF program did not load: {exc}", "run `ebpftop doctor`") from None
        try:
            b.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                                fn_name=FN_NAME.encode(), sample_freq=self.hz)
        except Exception as exc:
            b.cleanup()
            raise SamplerUnavailable(f"perf_event attach failed: {exc}",
                                     "check /proc/sys/kernel/perf_event_paranoid and that perf events exist in this VM") from None
        self._bpf = b

    def close(self) -> None:
        with self._mutex:
            self._close()

    def _close(self) -> None:
        b, self._bpf = self._bpf, None
        if b is None:
            return
        b.cleanup()  # detaches the perf events, closes program and map fds
        self._symbols.close()
        self._seen.clear()

    def lost(self) -> tuple[int, int]:
        """(samples with no room in the counts map, samples whose stack was not kept)."""
        with self._mutex:
            b = self._bpf
            if b is None:
                return (0, 0)
            table = b[b"lost"]
            return (int(table[ct.c_int(0)].value), int(table[ct.c_int(1)].value))

    def drain(self) -> list[RawStack]:
        """Everything counted since the last drain, symbolised; the counts restart."""
        with self._mutex:
            return self._drain()

    def _drain(self) -> list[RawStack]:
        b = self._bpf
        if b is None:
            raise RuntimeError("sampler not started")
        counts = b[b"counts"]
        stacks = b[b"stack_traces"]
        try:
            items = list(counts.items_lookup_and_delete_batch())
        except Exception:  # kernels without batch ops: read then delete, a few samples may be lost
            items = list(counts.items())
            for k, _ in items:
                try:
                    del counts[k]
                except KeyError:
                    pass
        out: list[RawStack] = []
        used: set[int] = set()
        now = time.monotonic()
        self._symbols.begin({int(k.tgid) for k, _ in items})
        for k, v in items:
            tgid = int(k.tgid)
            comm = k.comm.decode("utf-8", "replace")
            user = self._walk(stacks, k.user_stack_id, used, lambda a, p=tgid: self._symbols.user_stack(p, a))
            kern = self._walk(stacks, k.kernel_stack_id, used, self._kernel_stack)
            frames = user[::-1] + kern[::-1]
            out.append(RawStack(tgid, comm, frames or (LOST_STACK,), int(getattr(v, "value", v))))
            self._seen[tgid] = now
        # Each drain empties the stack table of what it read, so the table holds only
        # the last second's stacks and does not fill up with old ones.
        for sid in used:
            try:
                del stacks[stacks.Key(sid)]
            except KeyError:
                pass
        if now - self._last_prune > 30:
            self._prune_symbols(now)
        return out

    # --- symbols ----------------------------------------------------------------------

    def _walk(self, stacks, sid: int, used: set[int], names) -> tuple[str, ...]:
        """Leaf-first frame names of stack `sid`; () when there is none."""
        if sid < 0:
            return (LOST_STACK,) if sid != -errno.EFAULT else ()
        used.add(sid)
        try:
            ips = tuple(stacks[stacks.Key(sid)].ip)  # one copy of the array, not a Python walk
        except KeyError:
            return (LOST_STACK,)
        try:
            ips = ips[:ips.index(0)]  # the kernel ends a stack shorter than the array with 0
        except ValueError:
            pass
        return names(ips)

    def _kernel_stack(self, addrs: tuple[int, ...]) -> tuple[str, ...]:
        names = self._kstacks.get(addrs)
        if names is None:
            if len(self._kstacks) > MAX_KERNEL_NAMES:
                self._kstacks.clear()
            names = self._kstacks[addrs] = tuple(self._ksym(a) for a in addrs)
        return names

    def _ksym(self, addr: int) -> str:
        name = self._knames.get(addr)
        if name is None:
            from bcc import BPF

            if len(self._knames) > MAX_KERNEL_NAMES:
                self._knames.clear()
            name = self._knames[addr] = BPF.ksym(addr).decode("utf-8", "replace") + KERNEL_SUFFIX
        return name

    def _prune_symbols(self, now: float) -> None:
        """Drop what we know of processes gone (bcc's symbol tables included)."""
        self._last_prune = now
        gone = [p for p, t in self._seen.items() if now - t > 60 or not os.path.exists(f"/proc/{p}")]
        for p in gone:
            del self._seen[p]
        self._symbols.forget(gone)
