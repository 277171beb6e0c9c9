"""The pinned rules datapath: program, maps and tcx links under one bpffs directory.

bcc compiles and pins once; every update after is map writes through the pins.
`write_set` fills the inactive set, `flip` switches with one write, `fold` moves the
old set's counters into `base`. Pins of another layout are never read as ours.
Pin names, counters and crash safety: collectors/rules/README.md ("How it works").
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import mmap
import os
import re
import shutil
import socket
import struct
import threading
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bpfsys import wait_for_programs
from ..flows import tcx
from . import bpfsys
from .compile import (
    ADDR_TRIE_MAX,
    NO_EXPIRY,
    Compiled,
    lpm_key,
    pack_bits,
    pack_intervals,
    pack_table,
)
from .layout import (
    BASE_HEAD,
    COUNTER,
    COUNTER_SIZE,
    DEBRUIJN,
    INLINE,
    MAX_RULES,
    MAX_SLOTS,
    META,
    PROTO_ENTRIES,
    RULE,
    SET_PARTS,
    SET_SIZE,
)

HERE = Path(__file__).resolve().parent
SRC = HERE / "rules.bpf.c"
SETS = ("a", "b")


# The pin layout5 (rules.bpf.c). Layout 4 had no port intervals in the set; layout 3
# kept counters by slot; layout 2 in a per-CPU array; layout 1 had LPM tries for every
# field and coarse-ns times.
LAYOUT = 5
PROGS = ("ebpftop_rl_in", "ebpftop_rl_eg", "ebpftop_rl3_in", "ebpftop_rl3_eg")
PROG_PREFIX = "ebpftop_rl"
_WIDTH = {"src4": 32, "dst4": 32, "sport": 16, "dport": 16}
_ARPHRD_L3 = {65534, 776, 778}  # none (tun, wireguard), sit, gre: no link-layer header
_SIOCGIFFLAGS, _SIOCGIFHWADDR = 0x8913, 0x8927
# struct setv's ctz: the bit of (b * DEBRUIJN) >> 58 for each one-bit b (rules.bpf.c lowest())
_CTZ_ORDER: list[int] = sorted(range(64), key=lambda i: ((DEBRUIJN << i) & 0xFFFFFFFFFFFFFFFF) >> 58)
CTZ = bytes(_CTZ_ORDER)


class DatapathError(OSError):
    pass


_PINNED7 = re.compile(r'BPF_TABLE_PINNED7\((.*), "@PIN@/\w+", (\w+)\);')
_PINNED = re.compile(r'BPF_TABLE_PINNED\((.*), "@PIN@/\w+"\);')
_PIN_NAME = re.compile(r'"@PIN@/(\w+)"')


def _expanded() -> str:
    text = SRC.read_text()
    begin, end = text.index("//SET-BEGIN"), text.index("//SET-END")
    block = text[begin:end]
    sets = "".join(block.replace("@S@", s).replace("@N@", str(n)) for n, s in enumerate(SETS))
    return text[:begin] + sets + text[end:]


def source(pin_dir: str, *, pinned: bool = True) -> str:
    """The program's C; `pinned=False`: its maps pin nowhere (a warm copy, pinned later
    by `Datapath.load`)."""
    text = _expanded()
    if not pinned:
        text = _PINNED.sub(r"BPF_TABLE(\1);", _PINNED7.sub(r"BPF_F_TABLE(\1, \2);", text))
    return text.replace("@PIN@", pin_dir)


def map_names() -> list[str]:
    """Every map the program pins, by its pin name (which is also its name in the C)."""
    return _PIN_NAME.findall(_expanded())


def _compile(pin_dir: str, *, pinned: bool) -> Any:
    from bcc import BPF

    from ..bpfcompile import COMPILE_LOCK, yielding

    with COMPILE_LOCK, yielding():  # not thread-safe; at a lower priority (bpfcompile.py)
        return BPF(
            text=source(pin_dir, pinned=pinned).encode(),
            cflags=[
                f"-I{HERE}",  # rules.h, also for a variant of SRC elsewhere (bench/)
                f"-DLPM_MAX={ADDR_TRIE_MAX}",
                f"-DNCPUS={bpfsys.possible_cpus()}",
                "-Wno-unused-function",
            ],
        )


@dataclass
class _Warm:
    """A compiled and verified copy of the program held by this process, pinned nowhere:
    the first change pins it instead of compiling (the compile and the verifier take
    5-8 s). Nothing of it outlives the process."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    bpf: Any = None
    progs: dict[str, int] = dataclasses.field(default_factory=dict)  # program name -> fd (the bpf object's)

    def drop(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
        self.bpf, self.progs = None, {}


_WARM: dict[str, _Warm] = {}
_WARM_GUARD = threading.Lock()


def _warm_for(pin_dir: str) -> _Warm:
    with _WARM_GUARD:
        return _WARM.setdefault(pin_dir, _Warm())


def _ifreq(name: str, request: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, struct.pack("16s24x", name.encode()[:15]))


def up_interfaces() -> list[str]:
    """Interfaces that are up in this process's network namespace (not /sys, which
    shows the namespace that mounted it)."""
    out = []
    for _, name in sorted(socket.if_nameindex()):
        try:
            flags = struct.unpack_from("H", _ifreq(name, _SIOCGIFFLAGS), 16)[0]
        except OSError:
            continue
        if flags & 0x1:
            out.append(name)
    return out


def is_l3(name: str) -> bool:
    try:
        return struct.unpack_from("H", _ifreq(name, _SIOCGIFHWADDR), 16)[0] in _ARPHRD_L3
    except OSError:
        return False


@dataclass(frozen=True)
class LinkPin:
    path: str
    iface: str
    ingress: bool
    link_id: int
    ifindex: int  # 0: the device is gone (the link is defunct)


class Datapath:
    def __init__(self, pin_dir: str) -> None:
        self.pin_dir = pin_dir.rstrip("/") or "/"
        self._maps: dict[str, bpfsys.Map] = {}
        self._mapped: dict[str, tuple[mmap.mmap, memoryview]] = {}

    # --- pins ------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return f"{self.pin_dir}/{name}"

    def loaded(self) -> bool:
        """Whether a rules datapath (of any layout) is pinned here."""
        return all(
            os.path.exists(self.path(n)) for n in ("active", "counters", *(f"prog_{p}" for p in PROGS))
        )

    def layout(self) -> int:
        """The layout of the pinned maps: 1 for pins from before layouts were named."""
        try:
            names = os.listdir(self.pin_dir)
        except OSError:
            return LAYOUT
        found = [int(n[6:]) for n in names if n.startswith("layout") and n[6:].isdigit()]
        return max(found) if found else 1

    def map(self, name: str) -> bpfsys.Map:
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = bpfsys.Map.open(self.path(name))
        return m

    def close(self) -> None:
        for mm, view in self._mapped.values():
            view.release()
            mm.close()
        self._mapped.clear()
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def load(self) -> None:
        """Pin the program and its maps: a warm copy when there is one (`warm`; waits for
        one being compiled), else compiled now with bcc (maps pin themselves); idempotent."""
        if self.loaded():
            return
        warm = _warm_for(self.pin_dir)
        with warm.lock:
            if self.loaded():
                return
            os.makedirs(self.pin_dir, mode=0o700, exist_ok=True)
            if warm.bpf is not None and self._pin_warm(warm):
                return
            warm.drop()
            bpf = _compile(self.pin_dir, pinned=True)
            try:
                from bcc import BPF

                for name in PROGS:
                    fn = bpf.load_func(name, BPF.SCHED_CLS)
                    pin = self.path(f"prog_{name}")
                    if not os.path.exists(pin):
                        bpfsys.obj_pin(fn.fd, pin)
            finally:
                bpf.cleanup()

    def warm(self) -> bool:
        """Compile and verify the program now, in this process and pinned nowhere, so
        that the first change only pins it. Blocking (seconds): run it in a thread. False
        when there is nothing to do (loaded already, or warm)."""
        warm = _warm_for(self.pin_dir)
        with warm.lock:
            if self.loaded() or warm.bpf is not None:
                return False
            from bcc import BPF

            bpf = _compile(self.pin_dir, pinned=False)
            try:
                warm.progs = {name: bpf.load_func(name, BPF.SCHED_CLS).fd for name in PROGS}
            except BaseException:
                bpf.cleanup()
                warm.progs = {}
                raise
            warm.bpf = bpf
            return True

    def is_warm(self) -> bool:
        return _warm_for(self.pin_dir).bpf is not None

    def _pin_warm(self, warm: _Warm) -> bool:
        """Pin the warm copy's maps, then its programs (loaded() turns true last); False
        when pins are there already (a half-done load): the caller compiles against them."""
        maps = map_names()
        pins = [self.path(n) for n in maps] + [self.path(f"prog_{p}") for p in PROGS]
        if any(os.path.exists(p) for p in pins):
            return False
        from bcc.libbcc import lib  # the map's fd by name (get_table would decode its types)

        for name in maps:
            fd = lib.bpf_table_fd(warm.bpf.module, name.encode())
            if fd < 0:
                raise DatapathError(errno.ENOENT, f"the compiled rules program has no map {name!r}")
            bpfsys.obj_pin(fd, self.path(name))
        for name, fd in warm.progs.items():
            bpfsys.obj_pin(fd, self.path(f"prog_{name}"))
        warm.drop()  # the pins hold everything now
        return True

    # --- links -----------------------------------------------------------------------

    def links(self) -> list[LinkPin]:
        out: list[LinkPin] = []
        try:
            names = sorted(os.listdir(self.pin_dir))
        except OSError:
            return out
        for name in names:
            if not name.startswith("link_"):
                continue
            iface, _, side = name[5:].rpartition("_")
            path = self.path(name)
            try:
                fd = bpfsys.obj_get(path)
            except OSError:
                continue
            try:
                raw = bpfsys.obj_info(fd, 64)
            finally:
                os.close(fd)
            out.append(
                LinkPin(
                    path,
                    iface,
                    side == "in",
                    int.from_bytes(raw[4:8], "little"),
                    int.from_bytes(raw[16:20], "little"),
                )
            )
        return out

    def attach(self, ifaces: list[str]) -> list[str]:
        """Make sure the program runs on both directions of each; returns what was added.
        A pinned link whose device is gone or renumbered is replaced."""
        have = {(lp.iface, lp.ingress): lp for lp in self.links()}
        added: list[str] = []
        pinned: list[str] = []
        try:
            self._attach(ifaces, have, added, pinned)
        except BaseException:
            # a failed change must not leave the old set running on more interfaces
            for path in pinned:
                try:
                    fd = bpfsys.obj_get(path)
                    tcx.detach(fd)
                finally:
                    os.unlink(path)
            raise
        return added

    def _attach(
        self, ifaces: list[str], have: dict[tuple[str, bool], LinkPin], added: list[str], pinned: list[str]
    ) -> None:
        for iface in ifaces:
            try:
                ifindex = socket.if_nametoindex(iface)
            except OSError:
                raise DatapathError(
                    errno.ENODEV, f"no interface named {iface!r} in this network namespace"
                ) from None
            l3 = "3" if is_l3(iface) else ""
            for ingress in (True, False):
                old = have.get((iface, ingress))
                if old is not None and old.ifindex == ifindex:
                    continue
                if old is not None:
                    os.unlink(old.path)
                side = "in" if ingress else "eg"
                prog_fd = bpfsys.obj_get(self.path(f"prog_ebpftop_rl{l3}_{side}"))
                try:
                    link_fd = tcx.attach(prog_fd, ifindex, ingress)
                finally:
                    os.close(prog_fd)
                try:
                    bpfsys.obj_pin(link_fd, self.path(f"link_{iface}_{side}"))
                except BaseException:
                    tcx.detach(link_fd)
                    raise
                os.close(link_fd)  # the pin holds it now
                pinned.append(self.path(f"link_{iface}_{side}"))
                added.append(f"{iface} {'ingress' if ingress else 'egress'}")

    def remove(self) -> list[str]:
        """Detach every link and remove every pin (and the directory); what went."""
        gone = []
        for lp in self.links():
            try:
                fd = bpfsys.obj_get(lp.path)
                tcx.detach(fd)  # detach now, even if someone else holds an fd to it
            except OSError:
                pass
            os.unlink(lp.path)
            gone.append(f"link {lp.iface} {'ingress' if lp.ingress else 'egress'} (link {lp.link_id})")
        self.close()
        if os.path.isdir(self.pin_dir):
            for name in sorted(os.listdir(self.pin_dir)):
                os.unlink(self.path(name))
                gone.append(f"pin {self.path(name)}")
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        parent = os.path.dirname(self.pin_dir)
        # the default's parent, made by load(): left only when empty
        if os.path.basename(parent) == "ebpftop":
            with contextlib.suppress(OSError):
                os.rmdir(parent)
        return gone

    # --- the rule sets ---------------------------------------------------------------

    def active(self) -> int:
        raw = self.map("active").lookup(b"\0" * 4)
        return int.from_bytes(raw[:4], "little") if raw else 0

    def _memory(self, name: str) -> memoryview:
        """A mappable array map's values, mapped into memory (bytes)."""
        got = self._mapped.get(name)
        if got is None:
            m = self.map(name)
            size = -(-m.max_entries * m.value_size // mmap.PAGESIZE) * mmap.PAGESIZE
            mm = mmap.mmap(m.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            got = self._mapped[name] = (mm, memoryview(mm))
        return got[1]

    def _set(self, s: int) -> memoryview:
        m = self.map(f"set_{SETS[s]}")
        if m.value_size != SET_SIZE:  # the C struct and SET_PARTS disagree: never write across parts
            raise DatapathError(
                0, f"{self.path(f'set_{SETS[s]}')}: value of {m.value_size} bytes, expected {SET_SIZE}"
            )
        return self._memory(f"set_{SETS[s]}")

    def meta(self, s: int) -> tuple[int, int, int]:
        """(generation, number of rules, field flags) of set `s`."""
        return META.unpack_from(self._set(s), 0)

    def kernel_rules(self, s: int) -> list[tuple[int, int, int]]:
        """(slot, action, expires in jiffies; 0 = never) of every position of set `s` in use."""
        view = self._set(s)
        _, n, _ = META.unpack_from(view, 0)
        at = SET_PARTS["rules"][0]
        return [RULE.unpack_from(view, at + RULE.size * i) for i in range(min(n, MAX_RULES))]

    def write_set(self, s: int, c: Compiled, gen: int) -> None:
        """Fill set `s` (which must be inactive) completely with `c`."""
        name = SETS[s]
        view = self._set(s)

        def put(part: str, data: bytes) -> None:
            at, size = SET_PARTS[part]
            if len(data) > size:
                raise DatapathError(0, f"set part {part}: {len(data)} bytes for {size}")
            view[at : at + len(data)] = data

        put("cfg", META.pack(gen, 0, 0))  # half-written: says empty
        put("ctz", CTZ)
        for field, width in _WIDTH.items():
            if field in c.tables:  # a table nobody constrains is never read: leave it
                put(field, pack_table(c.tables[field], width))
                if c.tables[field].hi:
                    put(field[0] + "pi", pack_intervals(c.tables[field]))
        for field in ("src6", "dst6"):
            m = self.map(f"{field}_{name}")
            for key in m.keys():  # noqa: SIM118  # a BPF map, not a dict: keys() reads them all first
                m.delete(key)
            for (plen, data), bits in c.tries.get(field, {}).items():
                m.update(lpm_key(plen, data), pack_bits(bits))
        ifdir = self.map(f"ifdir_{name}")
        for key in ifdir.keys():  # noqa: SIM118  # a BPF map, not a dict: keys() reads them all first
            ifdir.delete(key)
        for ifindex, bits in c.ifdir.items():
            ifdir.update(struct.pack("<I", ifindex), pack_bits(bits))
        put("proto", b"".join(pack_bits(c.proto[p]) for p in range(PROTO_ENTRIES)))
        put(
            "rules",
            b"".join(
                RULE.pack(*(c.rules[pos] if pos < len(c.rules) else (0, 0, 0))) for pos in range(MAX_RULES)
            ),
        )
        put("exp", struct.pack(f"<{MAX_RULES}Q", *(c.exptimes + [NO_EXPIRY] * (MAX_RULES - len(c.exptimes)))))
        put(
            "alive",
            b"".join(
                pack_bits(c.alive[min(k, len(c.alive) - 1)] if c.alive else 0) for k in range(MAX_RULES + 1)
            ),
        )
        inline = b"".join(INLINE.pack(*c.inline.get(f, (0, 0))) for f in ("src4", "dst4", "sport", "dport"))
        put("cfg", META.pack(gen, len(c.rules), c.fields) + inline + b"".join(pack_bits(b) for b in c.wild))

    def flip(self, s: int) -> None:
        self.map("active").update(b"\0" * 4, struct.pack("<I", s))

    # --- counters ----------------------------------------------------------------------

    def _counter_words(self) -> memoryview:
        """The counters array mapped into memory, as 64-bit words."""
        return self._memory("counters").cast("Q")

    def counter_index(self, cpu: int, s: int, pos: int) -> int:
        return cpu * MAX_SLOTS + s * MAX_RULES + pos

    def position_counters(self, s: int, n: int) -> list[tuple[int, int, int]]:
        """(packets, bytes, last hit in jiffies (see kclock.py); 0 = never) of positions
        0..n-1 of set `s`, summed over CPUs; read from memory, no syscall."""
        words = self._counter_words()
        per = COUNTER_SIZE // 8
        cpus = range(self.map("counters").max_entries // MAX_SLOTS)
        out = []
        for pos in range(n):
            at = [self.counter_index(c, s, pos) * per for c in cpus]
            out.append(
                (sum(words[i] for i in at), sum(words[i + 1] for i in at), max(words[i + 2] for i in at))
            )
        return out

    def zero_counters(self, s: int) -> None:
        """Zero every position of set `s` on every CPU; only for a set no program runs."""
        raw = self._memory("counters")
        blank = bytes(MAX_RULES * COUNTER_SIZE)
        for cpu in range(self.map("counters").max_entries // MAX_SLOTS):
            at = self.counter_index(cpu, s, 0) * COUNTER_SIZE
            raw[at : at + len(blank)] = blank

    def _base_raw(self) -> bytes:
        return self.map("base").lookup(b"\0" * 4) or bytes(BASE_HEAD + MAX_SLOTS * COUNTER_SIZE)

    def read_base(self) -> tuple[int, list[tuple[int, int, int]]]:
        """(the generation folded last, (packets, bytes, last) per slot)."""
        raw = self._base_raw()
        return int.from_bytes(raw[:8], "little"), [
            COUNTER.unpack_from(raw, BASE_HEAD + i * COUNTER_SIZE) for i in range(MAX_SLOTS)
        ]

    def write_base(self, folded: int, counts: list[tuple[int, int, int]]) -> None:
        body = b"".join(COUNTER.pack(*c).ljust(COUNTER_SIZE, b"\0") for c in counts)
        self.map("base").update(b"\0" * 4, folded.to_bytes(8, "little").ljust(BASE_HEAD, b"\0") + body)

    def fold(self, s: int, reset: AbstractSet[int] = frozenset()) -> None:
        """Add set `s`'s counters into base by slot (unless already there), set the slots
        in `reset` to zero, then zero `s`'s counters. `s` must be inactive."""
        folded, counts = self.read_base()
        gen = self.meta(s)[0]
        changed = bool(reset)
        if gen != folded:  # not `>`: a change that stopped before its switch may have written gen already
            wait_for_programs()  # a program that read `active` before the switch may still count
            kernel = self.kernel_rules(s)
            for (slot, _, _), (p, b, last) in zip(
                kernel, self.position_counters(s, len(kernel)), strict=True
            ):
                cp, cb, cl = counts[slot % MAX_SLOTS]
                counts[slot % MAX_SLOTS] = (cp + p, cb + b, max(cl, last))
            folded, changed = gen, True
        for slot in reset:
            counts[slot] = (0, 0, 0)
        if changed:
            self.write_base(folded, counts)
        self.zero_counters(s)

    def rule_counters(self, slots: list[int]) -> dict[int, tuple[int, int, int]]:
        """slot -> (packets, bytes, last hit in jiffies; 0 = never) for the rules of the
        active set, `slots` in position order: base + the active set's counters + the
        inactive set's while they are not folded (a change that stopped after its switch)."""
        active = self.active()
        raw = self._base_raw()  # only the rules' slots are unpacked: this runs every tick
        folded = int.from_bytes(raw[:8], "little")
        out = {}
        for slot, (p, b, last) in zip(slots, self.position_counters(active, len(slots)), strict=True):
            bp, bb, bl = COUNTER.unpack_from(raw, BASE_HEAD + (slot % MAX_SLOTS) * COUNTER_SIZE)
            out[slot] = (bp + p, bb + b, max(bl, last))
        other = 1 - active
        if self.meta(other)[0] != folded:
            kernel = self.kernel_rules(other)
            for (slot, _, _), (p, b, last) in zip(
                kernel, self.position_counters(other, len(kernel)), strict=True
            ):
                if slot in out:
                    cp, cb, cl = out[slot]
                    out[slot] = (cp + p, cb + b, max(cl, last))
        return out
