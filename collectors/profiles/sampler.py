"""The BPF CPU sampler: perf_event on every CPU, stacks counted in the kernel
(sampler.bpf.c), drained and symbolised here.

A drain is split so the steady state never leaves the event loop: `drain_known()` and
`name_known()` are lookups, `name_new()` (reads /proc, asks bcc) runs in a thread.
One owner: `close()` detaches the perf events (they also die with the process).
"""

from __future__ import annotations

import array
import contextlib
import ctypes as ct
import errno
import mmap
import os
import pathlib
import struct
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from .symbols import Symbols

# bcc's BPF object and its tables: bcc ships no type information
BccTable = Any

SOURCE = pathlib.Path(__file__).with_name("sampler.bpf.c")
FN_NAME = "ebpftop_cpu"  # what `bpftool prog` shows; tests look for it
KERNEL_SUFFIX = "_[k]"  # flame graph convention for kernel frames
LOST_STACK = "[stack lost]"
MAX_KERNEL_NAMES = 100_000  # kernel addresses named before that cache starts over
MAX_MEMO = 200_000  # counts keys memoised before the memo starts over
ENOTSUPP = 524  # the kernel's "operation not supported" for a map type; not in errno
KEEP_FRACTION = 16  # the stack table is cleared when we hold ids for 1/16 of its slots
PRUNE_EVERY = 30.0  # seconds between sweeps of what we know of processes gone
MAX_KEYS = 10240  # counts map size cap (distinct keys between two drains)
KEYS_MIN = 1024
# Seconds of samples the counts map has room for: distinct keys between drains can never
# outnumber the samples taken, so a map sized to a few drains of them loses nothing
# unless a drain is that late (then `lost` says so). The batch read walks every bucket,
# full or not, so room nobody can fill is paid for every second.
KEYS_SECONDS = 4


def counts_room(hz: int, interval: float = 1.0, cpus: int | None = None) -> int:
    """Counts map entries for sampling every CPU at `hz`, drained every `interval` s."""
    cpus = cpus or os.cpu_count() or 1
    return min(MAX_KEYS, max(KEYS_MIN, int(hz * cpus * max(interval, 1.0) * KEYS_SECONDS)))


class SamplerUnavailable(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class RawStack(NamedTuple):  # one per counts key each drain: a tuple is cheaper than a dataclass
    tgid: int
    comm: str
    frames: tuple[str, ...]  # root first: user frames, then kernel frames
    count: int  # type: ignore[assignment]  # shadows tuple.count(); every reader means the samples


class Sampler:
    def __init__(
        self, hz: int = 49, *, max_keys: int | None = None, stack_slots: int = 16384, skip_tgid: int = 0
    ) -> None:
        if not 1 <= hz <= 1000:
            raise ValueError(f"sampling frequency must be 1..1000 Hz, not {hz}")
        self.hz = hz
        self.max_keys = counts_room(hz) if max_keys is None else max_keys
        self.stack_slots = stack_slots
        self.skip_tgid = skip_tgid
        self._bpf: Any = None  # bcc.BPF (bcc ships no type information), None until started
        self._seen: dict[int, float] = {}  # tgid -> last drain it appeared in
        # bcc's own lookup costs ~50 us a frame; hot stacks repeat every second.
        self._symbols = Symbols()
        self._knames: dict[int, str] = {}  # kernel addr -> name
        self._kstacks: dict[tuple[int, ...], tuple[str, ...]] = {}
        # Stack ids read so far (valid until the table is cleared): user id -> addresses
        # (names depend on the process), kernel id -> names.
        self._uids: dict[int, tuple[int, ...]] = {}
        self._kids: dict[int, tuple[str, ...]] = {}
        # counts key bytes (tgid first) -> (tgid, comm, frames): a drain of known keys is
        # one dict lookup per key. Dropped with the stack ids, or the pid's names.
        self._memo: dict[bytes, tuple[int, str, tuple[str, ...]]] = {}
        self._batch: _Batch | None = None
        self._stacks: _StackTable | None = None
        self._lost_view: memoryview | None = None  # the `lost` array mapped into our memory
        self.clears = 0  # times the stack table was cleared (tests, bench)
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
            raise SamplerUnavailable(
                "the BPF CPU sampler needs root", "run `sudo ebpftop`, or give --pprof URL for pprof only"
            )
        try:
            from bcc import BPF, PerfSWConfig, PerfType
        except ImportError as exc:
            raise SamplerUnavailable(
                f"bcc does not import ({exc})", "install python3-bpfcc (scripts/setup.sh)"
            ) from None
        from ..bpfcompile import COMPILE_LOCK, yielding

        cflags = [
            f"-DMAX_KEYS={self.max_keys}",
            f"-DSTACK_SLOTS={self.stack_slots}",
            f"-DSKIP_TGID={int(self.skip_tgid)}",
        ]
        try:
            with COMPILE_LOCK, yielding():  # not thread-safe; at a lower priority (bpfcompile.py)
                b = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/load failure
            raise SamplerUnavailable(f"BPF program did not load: {exc}", "run `ebpftop doctor`") from None
        try:
            b.attach_perf_event(
                ev_type=PerfType.SOFTWARE,
                ev_config=PerfSWConfig.CPU_CLOCK,
                fn_name=FN_NAME.encode(),
                sample_freq=self.hz,
            )
        except Exception as exc:
            b.cleanup()
            raise SamplerUnavailable(
                f"perf_event attach failed: {exc}",
                "check /proc/sys/kernel/perf_event_paranoid and that perf events exist in this VM",
            ) from None
        self._bpf = b

    def close(self) -> None:
        with self._mutex:
            self._close()

    def _close(self) -> None:
        b, self._bpf = self._bpf, None
        if b is None:
            return
        self._drop_lost_view()
        b.cleanup()  # detaches the perf events, closes program and map fds
        self._symbols.close()
        self._seen.clear()
        self._uids.clear()
        self._kids.clear()
        self._memo.clear()
        self._batch = None
        self._stacks = None

    def lost(self) -> tuple[int, int]:
        """(samples with no room in the counts map, samples whose stack was not kept)."""
        with self._mutex:
            b = self._bpf
            if b is None:
                return (0, 0)
            return self._read_lost(b)

    def drain(self) -> list[RawStack]:
        """Everything counted since the last drain, named; the counts restart."""
        with self._mutex:
            known, new = self._drain_known()
            return known + self._name_new(new)

    def drain_known(self) -> tuple[list[RawStack], list[Entry]]:
        """Read and clear the counts; the stacks whose key was named before, and the raw
        entries of the others for `name_new()`. Never blocks on /proc or bcc."""
        with self._mutex:
            return self._drain_known()

    def name_known(self, entries: list[Entry]) -> tuple[list[RawStack], list[Entry]]:
        """Of entries `drain_known()` left, those whose stacks are named from what is
        known already (a new pairing of known user and kernel stacks, a new stack of
        known functions), and the rest for `name_new()`. Reads no file but /proc/PID/stat
        and the exe link of their processes (to notice an exec; never waits on a disk)."""
        with self._mutex:
            return self._name_known(entries)

    def name_new(self, entries: list[Entry]) -> list[RawStack]:
        """Names for entries `drain_known()` left, and the periodic housekeeping (stack
        table clear, symbols of processes gone). Blocking: /proc reads, bcc."""
        with self._mutex:
            return self._name_new(entries)

    def housekeeping_due(self) -> bool:
        now = time.monotonic()
        return self._should_clear(now) or now - self._last_prune > PRUNE_EVERY

    def _drain_known(self) -> tuple[list[RawStack], list[Entry]]:
        b = self._bpf
        if b is None:
            raise RuntimeError("sampler not started")
        now = time.monotonic()
        memo, seen = self._memo, self._seen
        known: list[RawStack] = []
        new = []
        for entry in self._read_counts(b[b"counts"]):
            hit = memo.get(entry[0])
            if hit is None:
                new.append(entry)
            else:
                seen[hit[0]] = now
                known.append(RawStack(*hit, entry[1]))
        return known, new

    def _name_known(self, entries: list[Entry]) -> tuple[list[RawStack], list[Entry]]:
        return self._name(entries, known_only=True)

    def _name_new(self, entries: list[Entry]) -> list[RawStack]:
        out, _ = self._name(entries, known_only=False)
        now = time.monotonic()
        if self._should_clear(now):
            self._clear_stacks(self._bpf[b"stack_traces"])
        if now - self._last_prune > PRUNE_EVERY:
            self._prune_symbols(now)
        return out

    def _name(self, entries: list[Entry], *, known_only: bool) -> tuple[list[RawStack], list[Entry]]:
        """(entries named, entries left: only with known_only, those needing bcc or /proc)."""
        b = self._bpf
        if b is None:
            raise RuntimeError("sampler not started")
        counts, stacks, memo = b[b"counts"], b[b"stack_traces"], self._memo
        now = time.monotonic()
        tgids = [int.from_bytes(key[:4], sys.byteorder) for key, _ in entries]  # key_t begins with it
        # Only pids with a key never seen are checked for exec or reuse: a known key of a
        # pid that exec'd would need the new program to repeat the old one's stack ids
        # and comm; the prune forgets pids gone.
        self._forget_memo(self._symbols.begin(set(tgids)))  # exec or pid reused: names forgotten
        named, rest = [], []
        for tgid, entry in zip(tgids, entries, strict=True):
            hit = memo.get(entry[0])
            if hit is None:
                hit, complete = self._stack(counts, stacks, tgid, entry[0], known_only=known_only)
                if hit is None:
                    rest.append(entry)
                    continue
                if complete:  # a stack missing from the table may be there next time
                    if len(memo) >= MAX_MEMO:
                        memo.clear()
                    memo[entry[0]] = hit
            self._seen[tgid] = now
            named.append(RawStack(*hit, entry[1]))
        return named, rest

    def _forget_memo(self, pids: Iterable[int]) -> None:
        gone = set(pids)
        if gone:
            for key in [k for k, v in self._memo.items() if v[0] in gone]:
                del self._memo[key]

    def _read_counts(self, counts: BccTable) -> list[Entry]:
        """(key bytes, count) of every key counted, read and deleted in one
        BPF_MAP_LOOKUP_AND_DELETE_BATCH into buffers allocated once (bcc's own batch
        read allocates and walks ctypes arrays of the map's full size every call)."""
        if self._batch is None:
            self._batch = _Batch(counts, self.max_keys)
        try:
            return self._batch.drain()
        except _NoBatch:
            pass
        # kernels without batch ops: read then delete, a sample counted in between is lost
        items = list(counts.items())
        for k, _ in items:
            with contextlib.suppress(KeyError):
                del counts[k]
        return [(bytes(k), int(v.value)) for k, v in items]

    def _stack(
        self, counts: BccTable, stacks: BccTable, tgid: int, key: bytes, *, known_only: bool = False
    ) -> tuple[Hit | None, bool]:
        """((tgid, comm, root-first frames), found) of one counts key; found is False when a
        stack id was not in the table. The key's stack ids are stable until the table is
        cleared, so this is asked once per key, not per drain. With known_only, (None,
        False) when a name is not known yet."""
        k = counts.Key.from_buffer_copy(key)
        comm = k.comm.decode("utf-8", "replace")
        usid, ksid = k.user_stack_id, k.kernel_stack_id
        user = self._user_ips(stacks, usid)
        user_names: tuple[str, ...] | None
        if user is None:
            user_names = (LOST_STACK,)
        elif not user:
            user_names = ()
        elif known_only:
            user_names = self._symbols.known_stack(tgid, user)
            if user_names is None:
                return None, False
        else:
            user_names = self._symbols.user_stack(tgid, user)
        kern = self._kernel_names(stacks, ksid, known_only=known_only)
        if kern is None:
            return None, False
        found = (usid < 0 or usid in self._uids) and (ksid < 0 or ksid in self._kids)
        frames = user_names[::-1] + kern[::-1]
        return (tgid, comm, frames or (LOST_STACK,)), found

    def _ips(self, stacks: BccTable, sid: int) -> tuple[int, ...] | None:
        """Leaf-first addresses of stack `sid`; () when there is none, None when lost."""
        if sid < 0:
            return None if sid != -errno.EFAULT else ()
        leaf = self._stack_table(stacks).lookup(sid)
        if leaf is None:
            return None
        ips = array.array("Q", leaf)  # the raw u64 array, not a ctypes walk per frame
        with contextlib.suppress(ValueError):
            del ips[ips.index(0) :]  # the kernel ends a stack shorter than the array with 0
        return tuple(ips)

    def _user_ips(self, stacks: BccTable, sid: int) -> tuple[int, ...] | None:
        ips = self._uids.get(sid)
        if ips is None:
            ips = self._ips(stacks, sid)
            if ips is not None and sid >= 0:
                self._uids[sid] = ips  # a lost stack is asked again: it may be there later
        return ips

    def _kernel_names(
        self, stacks: BccTable, sid: int, *, known_only: bool = False
    ) -> tuple[str, ...] | None:
        names = self._kids.get(sid)
        if names is None:
            ips = self._ips(stacks, sid)
            if ips is None:
                return (LOST_STACK,)
            if known_only and ips not in self._kstacks and not all(a in self._knames for a in ips):
                return None  # bcc's kernel symbols are read on first use: not on the loop
            names = self._kernel_stack(ips)
            if sid >= 0:
                self._kids[sid] = names
        return names

    # --- the stack table ----------------------------------------------------------------

    def _read_lost(self, b: Any) -> tuple[int, int]:
        view = self._lost_view
        if view is None:
            view = self._lost_view = self._map_lost(b)
        if view:
            return LOST_PAIR.unpack_from(view)
        # bcc's table[key] normalises the key in Python at ~0.2 ms a lookup
        from bcc.libbcc import lib

        fd = b[b"lost"].map_fd
        out = []
        for i in (0, 1):
            key, value = ct.c_int(i), ct.c_uint64(0)
            if lib.bpf_lookup_elem(fd, ct.byref(key), ct.byref(value)) != 0:
                raise OSError(ct.get_errno(), "lookup in the sampler's lost counters failed")
            out.append(int(value.value))
        return out[0], out[1]

    @staticmethod
    def _map_lost(b: Any) -> memoryview:
        """The `lost` array (BPF_F_MMAPABLE) mapped read-only: read each second without a
        syscall. Empty when the kernel refuses (then it is looked up)."""
        try:
            m = mmap.mmap(b[b"lost"].map_fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):
            return memoryview(b"")
        return memoryview(m)

    def _drop_lost_view(self) -> None:
        view, self._lost_view = self._lost_view, None
        if view:
            m = view.obj
            view.release()
            if isinstance(m, mmap.mmap):
                m.close()

    def _stack_table(self, stacks: BccTable) -> _StackTable:
        if self._stacks is None:
            self._stacks = _StackTable(stacks)
        return self._stacks

    def _should_clear(self, now: float) -> bool:
        """The stack table is kept between drains (an id means the same stack until it
        is deleted, so known ids cost nothing) and cleared when the ids we hold pass a
        sixteenth of its slots: a new stack whose hash lands on a kept slot is refused
        (counted in lost()), so keeping more would trade samples for CPU."""
        return len(self._uids) + len(self._kids) > self.stack_slots // KEEP_FRACTION

    def _clear_stacks(self, stacks: BccTable) -> None:
        # Only ids we have read are deleted: an id first used after this drain is read
        # by the next one. A sample of a known stack counted between the drain and this
        # delete finds its stack again when the next sample of it stores it anew.
        table = self._stack_table(stacks)
        for sid in (*self._uids, *self._kids):
            table.delete(sid)
        self._uids.clear()
        self._kids.clear()
        self._memo.clear()
        self.clears += 1

    # --- symbols ----------------------------------------------------------------------

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
        self._forget_memo(gone)
        self._symbols.forget(gone)


Entry = tuple[bytes, int]  # a counts key as the map holds it, and its count
Hit = tuple[int, str, tuple[str, ...]]  # (tgid, comm, root-first frames) of one counts key
LOST_PAIR = struct.Struct("=QQ")  # sampler.bpf.c `lost`: two u64 counters


class _StackTable:
    """Lookups and deletes in the stack table by id, straight to libbpf into a buffer made
    once (bcc's table[key] builds and checks the key in Python: several times slower,
    and a busy node brings dozens of new stacks a second)."""

    def __init__(self, table: BccTable) -> None:
        from bcc.libbcc import lib

        self._lookup, self._delete = lib.bpf_lookup_elem, lib.bpf_delete_elem
        self._fd = table.map_fd
        self._key = ct.c_uint32(0)
        self._leaf = ct.create_string_buffer(ct.sizeof(table.Leaf))
        self._args = (self._fd, ct.byref(self._key), self._leaf)

    def lookup(self, sid: int) -> bytes | None:
        self._key.value = sid
        if self._lookup(*self._args) != 0:
            return None  # ENOENT: not recorded, or replaced since
        return self._leaf.raw

    def delete(self, sid: int) -> None:
        self._key.value = sid
        self._delete(self._fd, ct.byref(self._key))  # ENOENT: gone already, which is the aim


class _NoBatch(Exception):
    """The kernel has no batch operations for this map."""


class _Batch:
    """BPF_MAP_LOOKUP_AND_DELETE_BATCH of a hash map into buffers made once."""

    def __init__(self, table: BccTable, max_keys: int) -> None:
        from bcc.libbcc import lib

        self._fn = lib.bpf_lookup_and_delete_batch
        self._fd = table.map_fd
        self._ksize = ct.sizeof(table.Key)
        if ct.sizeof(table.Leaf) != 8:
            raise ValueError("counts values must be u64")
        self._max = max_keys
        self._keys = ct.create_string_buffer(self._ksize * max_keys)
        self._values = (ct.c_uint64 * max_keys)()
        self._token = ct.c_uint32(0)
        self._count = ct.c_uint32(0)
        self._works: bool | None = None
        # the first call's arguments, made once: most drains are that one call
        self._first = (self._fd, None, ct.byref(self._token), self._keys, self._values, ct.byref(self._count))
        self._counts = memoryview(self._values).cast("B").cast("Q")

    def drain(self) -> list[Entry]:
        if self._works is False:
            raise _NoBatch
        total = 0
        ks = self._ksize
        while total < self._max:
            self._count.value = self._max - total
            if total:
                res = self._fn(
                    self._fd,
                    ct.byref(self._token),
                    ct.byref(self._token),
                    ct.byref(self._keys, ks * total),
                    ct.byref(self._values, 8 * total),
                    ct.byref(self._count),
                )
            else:
                res = self._fn(*self._first)
            err = ct.get_errno()
            total += self._count.value
            if res != 0:
                if err == errno.ENOENT:
                    break  # the whole map was walked
                if err == errno.ENOSPC:
                    break  # a bucket larger than the room left; the rest waits a drain
                if self._works is None and err in (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP):
                    self._works = False
                    raise _NoBatch
                raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH failed: {os.strerror(err)}")
            if self._count.value == 0:
                break  # no progress (a bucket grew past the room left); the rest waits a drain
        self._works = True
        raw = ct.string_at(self._keys, ks * total)
        keys = [raw[i : i + ks] for i in range(0, ks * total, ks)]
        return list(zip(keys, self._counts[:total].tolist(), strict=True))
