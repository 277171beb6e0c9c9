"""TC attachment through netlink (clsact + bpf filter), for kernels without tcx.

Unlike a tcx link, a netlink filter outlives the process that made it. So every
filter ebpftop makes runs a program named `ebpftop_*`, and a filter whose program
no live process holds (see `held_prog_ids`) is a leftover of a dead ebpftop: the next
start and `ebpftop cleanup` find it and remove it. The `tc` command does the netlink
work; iproute2 is on every machine that has TC.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass

PIN_DIR = "/sys/fs/bpf/ebpftop/flows"
PREFIX = "ebpftop_"  # temporary pins
# The flows programs (ebpftop_fl_in/_eg, ebpftop_fl3_in/_eg). Other ebpftop programs
# (policy rules) outlive the process on purpose and are not ours to remove.
PROG_PREFIX = "ebpftop_fl"


class TcError(RuntimeError):
    pass


@dataclass(frozen=True)
class TcFilter:
    dev: str
    ingress: bool
    pref: int
    handle: str
    prog_id: int
    prog_name: str

    def describe(self) -> str:
        side = "ingress" if self.ingress else "egress"
        return (
            f"tc filter {self.dev} {side} pref {self.pref} handle {self.handle} "
            f"prog {self.prog_name} (id {self.prog_id})"
        )


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise TcError("the `tc` command is missing (install iproute2)") from None
    if check and proc.returncode != 0:
        raise TcError(f"tc {' '.join(args)}: {proc.stderr.strip() or 'failed'}")
    return proc


def _pin(prog_fd: int, path: str) -> None:
    from bcc import libbcc

    if not os.path.ismount("/sys/fs/bpf"):
        raise TcError("bpffs is not mounted on /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if libbcc.lib.bpf_obj_pin(prog_fd, path.encode()) != 0:
        raise TcError(f"cannot pin the program at {path} (is bpffs mounted on /sys/fs/bpf?)")


def attach(prog_fd: int, prog_id: int, dev: str, ingress: bool) -> TcFilter:
    """Attach through clsact; returns the filter so `detach` can remove exactly it."""
    _tc("qdisc", "add", "dev", dev, "clsact", check=False)  # exists already: fine
    side = "ingress" if ingress else "egress"
    # tc attaches pinned programs only; the pin is removed as soon as the filter holds it.
    pin = f"{PIN_DIR}/{PREFIX}{side}-{os.getpid()}-{dev}"
    _pin(prog_fd, pin)
    try:
        _tc("filter", "add", "dev", dev, side, "bpf", "direct-action", "object-pinned", pin)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pin)
    for f in filters(dev):
        if f.ingress == ingress and f.prog_id == prog_id:
            return f
    raise TcError(f"filter added on {dev} {side} but not found afterwards")


def detach(f: TcFilter) -> None:
    side = "ingress" if f.ingress else "egress"
    _tc("filter", "del", "dev", f.dev, side, "pref", str(f.pref), "handle", f.handle, "bpf", check=False)
    _drop_empty_clsact(f.dev)


def _drop_empty_clsact(dev: str) -> None:
    """Remove clsact when nothing is left on it, so no trace of ebpftop stays."""
    for side in ("ingress", "egress"):
        proc = _tc("-j", "filter", "show", "dev", dev, side, check=False)
        if proc.returncode != 0 or _parse(proc.stdout, dev, True):
            return
        try:
            if json.loads(proc.stdout or "[]"):
                return
        except json.JSONDecodeError:
            return
    qd = _tc("-j", "qdisc", "show", "dev", dev, check=False)
    try:
        kinds = [q.get("kind") for q in json.loads(qd.stdout or "[]")]
    except json.JSONDecodeError:
        return
    if "clsact" in kinds:
        _tc("qdisc", "del", "dev", dev, "clsact", check=False)


def _parse(text: str, dev: str, ingress: bool) -> list[TcFilter]:
    try:
        rows = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    out = []
    for row in rows:
        opts = row.get("options") or {}
        prog = opts.get("prog") or {}
        name = prog.get("name") or ""
        if row.get("kind") == "bpf" and name.startswith(PROG_PREFIX) and "handle" in opts:
            out.append(
                TcFilter(
                    dev, ingress, int(row.get("pref", 0)), str(opts["handle"]), int(prog.get("id", 0)), name
                )
            )
    return out


def filters(dev: str) -> list[TcFilter]:
    """The flows datapath's bpf filters on one device (both sides)."""
    out: list[TcFilter] = []
    for ingress in (True, False):
        proc = _tc("-j", "filter", "show", "dev", dev, "ingress" if ingress else "egress", check=False)
        if proc.returncode == 0:
            out.extend(_parse(proc.stdout, dev, ingress))
    return out


def all_filters() -> list[TcFilter]:
    out: list[TcFilter] = []
    for dev in sorted(os.listdir("/sys/class/net")):
        out.extend(filters(dev))
    return out


def held_prog_ids() -> set[int]:
    """Program ids some live process holds an fd to (from /proc/*/fdinfo)."""
    held: set[int] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        base = f"/proc/{pid}/fdinfo"
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"{base}/{fd}") as fh:
                    text = fh.read()
            except OSError:
                continue
            i = text.find("prog_id:\t")
            if i >= 0 and "link_id:" not in text:
                held.add(int(text[i + 9 :].split("\n", 1)[0]))
    return held


def stale_filters() -> list[TcFilter]:
    """ebpftop filters whose program no live process holds: left by a dead ebpftop."""
    found = all_filters()
    if not found:
        return []
    held = held_prog_ids()
    return [f for f in found if f.prog_id not in held]


def stale_pins() -> list[str]:
    """Temporary pins a crash may have left between pinning and attaching."""
    try:
        names = os.listdir(PIN_DIR)
    except OSError:
        return []
    return [f"{PIN_DIR}/{n}" for n in sorted(names) if n.startswith(PREFIX)]
