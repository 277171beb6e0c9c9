"""Which BPF programs are ebpftop's, and their kernel counters.

Ours are the programs this process holds, as the kernel lists them in /proc/self/fdinfo:
a program fd (bcc keeps one per loaded function: flows' TC programs, the TCP
tracepoints, the profiler's perf_event program) or a link fd (tcx) names its prog_id.
Asking the kernel rather than each loader cannot miss a program a loader adds later.
The rules programs are pinned and outlive the process, so they are found by their pins.
"""

from __future__ import annotations

import contextlib
import os

from ..bpfsys import BpfError, ProgInfo, prog_ids, prog_info, prog_info_by_id

# Program name prefix -> the part of ebpftop that loads it. bcc names a program after
# its function, cut to 15 bytes; a TRACEPOINT_PROBE(sock, inet_sock_set_state) loses its
# "tracepoint__" on the way ("sock__inet_sock"). A program missing here is still listed
# as ebpftop's, under "ebpftop".
OWNERS = (
    ("ebpftop_fl", "flows"),
    ("sock__inet_sock", "tcp events"),
    ("tcp__tcp_retran", "tcp events"),
    ("ebpftop_rl", "rules"),
    ("ebpftop_cpu", "profiles"),
)
_HELD_KINDS = ("anon_inode:bpf-prog", "anon_inode:bpf_link")


def owner_of(name: str) -> str:
    for prefix, owner in OWNERS:
        if name.startswith(prefix):
            return owner
    return "ebpftop"  # held by this process, loaded by a part not named above


def held_prog_ids(fd_dir: str = "/proc/self/fd") -> set[int]:
    """Ids of the programs this process holds an fd to, directly or through a link."""
    ids: set[int] = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return ids
    info_dir = os.path.join(os.path.dirname(fd_dir), "fdinfo")
    for fd in fds:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) not in _HELD_KINDS:
                continue
            with open(os.path.join(info_dir, fd)) as f:
                text = f.read()
        except OSError:
            continue  # closed meanwhile
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "prog_id" and value.strip().isdigit():
                ids.add(int(value))
    return ids


def pinned_rule_programs(pin_dir: str) -> list[ProgInfo]:
    """The rules datapath's pinned programs (loaded by any ebpftop, kept on purpose)."""
    from ..rules.bpfsys import obj_get
    from ..rules.datapath import PROGS

    out = []
    for name in PROGS:
        try:
            fd = obj_get(os.path.join(pin_dir, f"prog_{name}"))
        except (BpfError, OSError):
            continue  # not loaded
        try:
            out.append(prog_info(fd))
        except BpfError:
            continue
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return out


def own_programs(pin_dir: str) -> list[tuple[ProgInfo, str]]:
    """ebpftop's programs with the part that loaded each."""
    out: list[tuple[ProgInfo, str]] = []
    seen: set[int] = set()
    for prog_id in sorted(held_prog_ids()):
        info = prog_info_by_id(prog_id)
        if info is not None:
            seen.add(info.id)
            out.append((info, owner_of(info.name)))
    for info in pinned_rule_programs(pin_dir):
        if info.id not in seen:
            out.append((info, "rules (pinned)"))
    return out


def host_programs() -> list[ProgInfo]:
    """Every program loaded on the host (those that vanish meanwhile are left out)."""
    return [info for info in map(prog_info_by_id, prog_ids()) if info is not None]
