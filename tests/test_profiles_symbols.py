"""Symbol names for sampled addresses: shared by file across processes, asked of bcc
only when not known, forgotten when a pid stops being the process we knew, and the
same names bcc's own BPF.sym gives."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from typing import ClassVar

import pytest
from conftest import need

from ebpftop.collectors.profiles.symbols import UNKNOWN, Symbols, parse_maps

LIBFOO = "/usr/lib/libfoo.so"


class FakeResolver:
    """Stands in for bcc: names by offset in the one module, counts every question."""

    # class-wide on purpose: Symbols makes its own resolvers, the tests read what all of them saw
    asked: ClassVar[list[tuple[int, int]]] = []
    freed: ClassVar[list[int]] = []
    names: ClassVar[dict[tuple[int, int], bytes]] = {}  # (pid, address) -> name; else unknown in `module`

    def __init__(self, pid: int, lazy: bool = True) -> None:
        self.pid = pid
        self.lazy = lazy

    def resolve(self, addr: int, demangle: bool):
        FakeResolver.asked.append((self.pid, addr))
        name = FakeResolver.names.get((self.pid, addr))
        return (name, 0, b"/usr/lib/libfoo.so") if name else (None, 0x10, b"/usr/lib/libfoo.so")

    def free(self) -> None:
        FakeResolver.freed.append(self.pid)


@pytest.fixture
def fake(tmp_path):
    FakeResolver.asked, FakeResolver.freed, FakeResolver.names = [], [], {}
    proc = tmp_path / "proc"
    bins = tmp_path / "bin"
    bins.mkdir()

    def process(pid: int, maps: str, *, exe: str = "app", start: int = 100) -> None:
        d = proc / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        (bins / exe).touch()
        if (d / "exe").is_symlink():
            (d / "exe").unlink()
        (d / "exe").symlink_to(bins / exe)
        # comm with a space and a parenthesis: the start time is found after the last ')'
        (d / "stat").write_text(f"{pid} (we ird) x) S 1 " + " ".join(["0"] * 17) + f" {start} 0 0\n")
        (d / "maps").write_text(maps)

    return proc, process


def maps_line(
    start: int, end: int, perms: str = "r-xp", offset: int = 0, inode: int = 4242, path: str = LIBFOO
) -> str:
    return f"{start:x}-{end:x} {perms} {offset:08x} fe:01 {inode}    {path}\n"


def test_parse_maps_keeps_executable_mappings_with_their_file_identity():
    text = (
        maps_line(0x1000, 0x2000, "r--p", 0)
        + maps_line(0x2000, 0x5000, "r-xp", 0x1000)
        + "7f00-8f00 rw-p 00000000 00:00 0 \n"
        + "9000-a000 r-xp 00000000 00:00 0    [vdso]\n"
        + "garbage line\n"
    )
    maps = parse_maps(text)
    assert [(m.start, m.end, m.offset, m.inode) for m in maps] == [
        (0x2000, 0x5000, 0x1000, 4242),
        (0x9000, 0xA000, 0, 0),
    ]
    assert maps[0].dev == os.makedev(0xFE, 0x01)


def test_a_name_is_asked_once_per_file_offset_whatever_the_process(fake):
    proc, process = fake
    # the same library at different addresses (ASLR) in two processes
    process(10, maps_line(0x10000, 0x20000, offset=0x1000))
    process(11, maps_line(0x70000, 0x80000, offset=0x1000))
    FakeResolver.names = {(10, 0x10500): b"foo_hot"}
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10, 11])
    assert s.user_stack(10, (0x10500,)) == ("foo_hot",)
    assert s.user_stack(11, (0x70500,)) == ("foo_hot",)  # same file offset 0x1500
    assert s.user_stack(10, (0x10500, 0x10500)) == ("foo_hot", "foo_hot")
    assert FakeResolver.asked == [(10, 0x10500)]
    # an unnamed address says which binary, as BPF.sym(show_module=True) does
    assert s.user_stack(11, (0x70600,)) == (f"{UNKNOWN} [libfoo.so]",)


def test_known_stack_names_only_from_what_is_known_and_equals_user_stack(fake):
    proc, process = fake
    process(10, maps_line(0x10000, 0x20000, offset=0x1000))
    process(11, maps_line(0x70000, 0x80000, offset=0x1000))
    FakeResolver.names = {(10, 0x10500): b"foo_hot", (10, 0x10600): b"foo_cold"}
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10, 11])
    assert s.known_stack(10, (0x10500,)) is None  # never named: bcc's to say
    assert s.user_stack(10, (0x10500,)) == ("foo_hot",)
    assert s.known_stack(10, (0x10500,)) == ("foo_hot",)
    assert s.known_stack(11, (0x70500,)) is None  # its mappings never read: not known
    s.user_stack(11, (0x70700,))
    asked = list(FakeResolver.asked)
    # another process mapping the same file, a new stack of known addresses: no question
    assert s.known_stack(11, (0x70500, 0x70500)) == ("foo_hot", "foo_hot")
    assert FakeResolver.asked == asked
    # one address not named yet, or outside every mapping (maps to read again): not known
    assert s.known_stack(10, (0x10500, 0x10600)) is None
    assert s.known_stack(10, (0x99999999,)) is None
    assert s.known_stack(12, (0x10500,)) is None  # a process never seen
    assert FakeResolver.asked == asked
    assert s.user_stack(10, (0x10500, 0x10600)) == ("foo_hot", "foo_cold")
    assert s.known_stack(10, (0x10600, 0x10500)) == ("foo_cold", "foo_hot")


def test_the_donor_is_asked_first_and_reads_names_once(fake):
    proc, process = fake
    process(1, maps_line(0x40000, 0x50000, offset=0x1000))  # ebpftop itself maps libfoo too
    process(20, maps_line(0x10000, 0x20000, offset=0x1000))
    FakeResolver.names = {(1, 0x40500): b"foo_hot"}
    made = []

    def resolver(pid, lazy=True):
        made.append((pid, lazy))
        return FakeResolver(pid, lazy)

    s = Symbols(proc=str(proc), resolver=resolver, donor=1)
    s.begin([20])
    assert s.user_stack(20, (0x10500,)) == ("foo_hot",)
    assert FakeResolver.asked == [(1, 0x40500)] and made == [(1, False)]


def test_what_is_not_code_is_unknown_without_asking(fake):
    proc, process = fake
    process(10, maps_line(0x10000, 0x20000) + maps_line(0x30000, 0x40000, "rw-p"))
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10])
    # junk from a frame-pointer walk: heap, a data mapping, nothing mapped at all
    assert s.user_stack(10, (0x5, 0x30010, 0x99999999)) == (UNKNOWN,) * 3
    # a process gone before we first looked
    assert s.user_stack(12345, (0x10010,)) == (UNKNOWN,)
    assert FakeResolver.asked == []


def test_a_process_with_a_jit_perf_map_asks_bcc_for_everything(fake):
    proc, process = fake
    process(10, maps_line(0x10000, 0x20000))
    (proc / "10" / "root" / "tmp").mkdir(parents=True)
    (proc / "10" / "root" / "tmp" / "perf-10.map").write_text("5000 100 jitted_fn\n")
    FakeResolver.names = {(10, 0x5010): b"jitted_fn"}
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10])
    assert s.user_stack(10, (0x5010,)) == ("jitted_fn",)


def test_anonymous_executable_memory_goes_to_bcc_for_that_process(fake):
    proc, process = fake
    jit = "50000-60000 rwxp 00000000 00:00 0 \n"
    process(10, jit)
    process(11, jit)
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10, 11])
    s.user_stack(10, (0x50010,))
    s.user_stack(11, (0x50010,))
    assert FakeResolver.asked == [(10, 0x50010), (11, 0x50010)]


def test_exec_or_a_reused_pid_forgets_the_old_names(fake):
    proc, process = fake
    process(10, maps_line(0x10000, 0x20000, inode=1))
    FakeResolver.names = {(10, 0x10500): b"old_fn"}
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10])
    assert s.user_stack(10, (0x10500,)) == ("old_fn",)
    # exec: another binary, another library at the same address
    process(10, maps_line(0x10000, 0x20000, inode=2), exe="other")
    FakeResolver.names = {(10, 0x10500): b"new_fn"}
    s.begin([10])
    assert s.user_stack(10, (0x10500,)) == ("new_fn",)
    assert FakeResolver.freed == [10]
    # the pid reused by a new process of the same binary: the start time tells
    process(10, maps_line(0x10000, 0x20000, inode=3), exe="other", start=999)
    FakeResolver.names = {(10, 0x10500): b"third_fn"}
    s.begin([10])
    assert s.user_stack(10, (0x10500,)) == ("third_fn",)
    # gone: what we knew stays usable for its last samples
    for f in ("exe", "stat", "maps"):
        os.unlink(proc / "10" / f)
    s.begin([10])
    assert s.user_stack(10, (0x10500,)) == ("third_fn",)
    s.close()
    assert FakeResolver.freed == [10, 10, 10]


def test_a_library_loaded_later_is_found_on_the_next_drain(fake):
    proc, process = fake
    process(10, maps_line(0x10000, 0x20000))
    FakeResolver.names = {(10, 0x90500): b"plugin_fn"}
    s = Symbols(proc=str(proc), resolver=FakeResolver, donor=-1)
    s.begin([10])
    s.user_stack(10, (0x10010,))
    process(
        10, maps_line(0x10000, 0x20000) + maps_line(0x90000, 0x91000, inode=77, path="/usr/lib/plugin.so")
    )
    s.begin([10])
    assert s.user_stack(10, (0x90500,)) == ("plugin_fn",)
    # outside every mapping even after reading them again: not code, and read once a drain
    s.begin([10])
    reads = []
    s._read_maps = lambda pid, _orig=s._read_maps: reads.append(pid) or _orig(pid)
    assert s.user_stack(10, (0xA0000, 0xB0000)) == (UNKNOWN, UNKNOWN)
    assert reads == [10]


# --- against bcc itself ---------------------------------------------------------------


_BCC_NAMES = """
import json, sys
from bcc import BPF
out = []
for addr, pid in json.loads(sys.argv[1]):
    raw = BPF.sym(addr, pid)
    if raw == b"[unknown]":
        raw = BPF.sym(addr, pid, show_module=True)
    out.append(raw.decode("utf-8", "replace"))
print(json.dumps(out))
"""


def _bcc_names(asked: list[tuple[int, int]]) -> tuple[str, ...]:
    """BPF.sym's answers, asked in a process of their own: bcc 0.26 closes file
    descriptors it does not own (see bccsyms.py), here pytest's capture files."""
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _BCC_NAMES, json.dumps(asked)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(json.loads(proc.stdout))


def _libc_base(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if (
                len(parts) >= 6
                and os.path.basename(parts[5]).startswith("libc.so")
                and parts[2] == "00000000"
            ):
                return int(parts[0].split("-")[0], 16)
    raise AssertionError(f"no libc in /proc/{pid}/maps")


def test_names_match_bcc_for_this_process_and_another():
    try:
        import bcc  # noqa: F401
    except ImportError:
        need(False, "needs python3-bpfcc")
    libc = ctypes.CDLL("libc.so.6")
    here = [ctypes.cast(getattr(libc, fn), ctypes.c_void_p).value + 4 for fn in ("getpid", "qsort", "memcpy")]
    here.append(ctypes.cast(ctypes.pythonapi.PyObject_GetAttr, ctypes.c_void_p).value + 8)
    here.append(id(object()))  # the heap: not code
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        # wait until the child has mapped libc (it reads stdin only after starting up)
        for _ in range(200):
            try:
                shift = _libc_base(child.pid) - _libc_base(os.getpid())
                break
            except AssertionError:
                import time

                time.sleep(0.05)
        else:
            raise AssertionError("the child never mapped libc")
        there = [a + shift for a in here[:3]]
        for donor in (None, -1):
            s = Symbols(donor=donor)
            s.begin([os.getpid(), child.pid])
            ours = s.user_stack(os.getpid(), tuple(here)) + s.user_stack(child.pid, tuple(there))
            s.close()
            theirs = _bcc_names([(a, os.getpid()) for a in here] + [(a, child.pid) for a in there])
            assert ours == theirs
        assert ours[-3] == ours[0] and ours[3] == "PyObject_GetAttr" and ours[4] == UNKNOWN
    finally:
        child.kill()
        child.wait()


def test_bcc_lookups_close_no_file_descriptor_of_ours(monkeypatch):
    """bcc 0.26 closes an fd it never opened each time it builds a process's symbol
    cache (iovisor/bcc#5193; caught in the act with `strace -k`: close() of our fd from
    ProcSyms::_add_module). In the pytest process that ended a whole run with EBADF.
    Whether it hits depends on the heap, so: bcc builds no cache in our process at all,
    and every descriptor we hold stays in place."""
    try:
        from bcc.libbcc import lib
    except ImportError:
        need(False, "needs python3-bpfcc")

    def not_here(*_args):
        raise AssertionError("a bcc symbol cache built in our own process")

    monkeypatch.setattr(lib, "bcc_symcache_new", not_here)
    monkeypatch.setattr(lib, "bcc_free_symcache", not_here)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    null = os.stat("/dev/null")
    s = Symbols(donor=-1)
    held: list[int] = []
    try:
        addr = ctypes.cast(ctypes.pythonapi.PyObject_GetAttr, ctypes.c_void_p).value + 8
        for _ in range(20):
            # opened between lookups, as a busy process does: ours take the numbers bcc
            # used and closed, the numbers its stray close hits
            for fd in held:
                os.close(fd)
            held = [os.open("/dev/null", os.O_RDONLY) for _ in range(64)]
            s.forget([os.getpid(), child.pid])  # the next lookup builds bcc's cache again
            s._files.clear()
            s.begin([os.getpid(), child.pid])
            assert s.user_stack(os.getpid(), (addr,)) == ("PyObject_GetAttr",)
            s.user_stack(child.pid, (addr,))
            for fd in held:
                st = os.fstat(fd)  # EBADF: closed behind our back
                assert (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino), f"fd {fd} is another file now"
    finally:
        s.close()
        child.kill()
        child.wait()
        for fd in held:
            os.close(fd)


def test_a_lost_helper_is_started_again_and_names_still_come():
    try:
        import bcc  # noqa: F401
    except ImportError:
        need(False, "needs python3-bpfcc")
    addr = ctypes.cast(ctypes.pythonapi.PyObject_GetAttr, ctypes.c_void_p).value + 8
    s = Symbols(donor=-1)
    try:
        assert s.user_stack(os.getpid(), (addr,)) == ("PyObject_GetAttr",)
        helper = s._helper._proc
        helper.kill()  # as if bcc had closed the helper's socket
        helper.wait()
        s.forget([os.getpid()])
        s._files.clear()
        assert s.user_stack(os.getpid(), (addr,)) == ("PyObject_GetAttr",)
        assert s._helper.restarts == 1 and s._helper._proc.pid != helper.pid
    finally:
        s.close()
    assert s._helper._proc is None  # close() leaves no helper behind
