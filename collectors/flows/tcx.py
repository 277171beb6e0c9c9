"""TC attachment through BPF links (tcx, kernel >= 6.6), via the bpf(2) syscall.

bcc 0.26 predates tcx. A tcx link is a file descriptor owned by this process: when
the process ends -- exit, crash or SIGKILL -- the kernel closes it and the program
is detached. Nothing can be left behind, which is why tcx is preferred over netlink.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

from ..bpfsys import BpfError, bpf

# From include/uapi/linux/bpf.h of 6.6+ (the 6.1 headers on this VM lack them).
BPF_LINK_CREATE = 28
BPF_LINK_DETACH = 34
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47


class _LinkCreateTcx(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("target_ifindex", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("relative_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("expected_revision", ctypes.c_uint64),
    ]


class _Attr(ctypes.Union):
    # union bpf_attr is larger than any one command's part; the kernel wants the
    # rest zeroed, so pass a generously sized zeroed buffer.
    _fields_ = [("link_create", _LinkCreateTcx), ("link_fd", ctypes.c_uint32), ("_raw", ctypes.c_uint8 * 128)]


TcxError = BpfError
_bpf = bpf


def attach(prog_fd: int, ifindex: int, ingress: bool) -> int:
    """Attach `prog_fd` to the interface; returns the link fd (close it to detach)."""
    attr = _Attr()
    attr.link_create.prog_fd = prog_fd
    attr.link_create.target_ifindex = ifindex
    attr.link_create.attach_type = BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS
    return _bpf(BPF_LINK_CREATE, attr)


def detach(link_fd: int) -> None:
    """Detach and close. Detaching first makes it immediate even if the fd leaked
    into a child process."""
    attr = _Attr()
    attr.link_fd = link_fd
    try:
        _bpf(BPF_LINK_DETACH, attr)
    except TcxError:
        pass  # the device may be gone already; closing still frees the link
    finally:
        os.close(link_fd)


_supported: bool | None = None


def supported() -> bool:
    """Whether this kernel has tcx: a link create on a bad fd says EBADF if it does."""
    global _supported
    if _supported is None:
        try:
            attach(-1, 1, True)
        except TcxError as exc:
            import errno

            # EBADF: the command parsed and looked up the fd. EINVAL: attach type unknown.
            _supported = exc.errno == errno.EBADF
        else:  # pragma: no cover - cannot succeed with fd -1
            _supported = True
    return _supported


# --- inventory: which tcx links exist and which program each runs -------------------

BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_LINK_TYPE_TCX = 11


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _Any(ctypes.Union):
    _fields_ = [("ids", _IdAttr), ("info", _InfoAttr), ("_raw", ctypes.c_uint8 * 128)]


_call = bpf


def _ids(cmd: int) -> Iterator[int]:
    current = 0
    while True:
        attr = _Any()
        attr.ids.id = current
        try:
            _call(cmd, attr)
        except TcxError:
            return  # ENOENT: no more
        current = attr.ids.next_id
        yield current


def _info(fd: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    attr = _Any()
    attr.info.bpf_fd = fd
    attr.info.info_len = size
    attr.info.info = ctypes.addressof(buf)
    _call(BPF_OBJ_GET_INFO_BY_FD, attr)
    return buf.raw


def _fd_by_id(cmd: int, obj_id: int) -> int:
    attr = _Any()
    attr.ids.id = obj_id
    return _call(cmd, attr)


def prog_name(prog_id: int) -> str | None:
    """The program's name (bpf_prog_info.name), or None when it is gone."""
    try:
        fd = _fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
    except TcxError:
        return None
    try:
        raw = _info(fd, 256)
    finally:
        os.close(fd)
    return raw[64:80].split(b"\0", 1)[0].decode(errors="replace")


def prog_exists(prog_id: int) -> bool:
    return prog_name(prog_id) is not None


def prog_id_of_fd(fd: int) -> int:
    return int.from_bytes(_info(fd, 256)[4:8], "little")


class LinkInfo(tuple[int, int, str, int, bool]):
    """(link_id, prog_id, prog_name, ifindex, ingress)"""

    __slots__ = ()

    def __new__(cls, link_id: int, prog_id: int, prog_name: str, ifindex: int, ingress: bool) -> LinkInfo:
        return super().__new__(cls, (link_id, prog_id, prog_name, ifindex, ingress))

    link_id = property(lambda s: s[0])
    prog_id = property(lambda s: s[1])
    prog_name = property(lambda s: s[2])
    ifindex = property(lambda s: s[3])
    ingress = property(lambda s: s[4])


def tcx_links(name_prefix: str = "") -> list[LinkInfo]:
    """Every tcx link in the system whose program name starts with `name_prefix`.

    ifindex is relative to the network namespace the link was made in."""
    out = []
    for link_id in _ids(BPF_LINK_GET_NEXT_ID):
        try:
            fd = _fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id)
        except TcxError:
            continue
        try:
            raw = _info(fd, 64)
        except TcxError:
            continue
        finally:
            os.close(fd)
        ltype, lid, pid = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
        if ltype != BPF_LINK_TYPE_TCX:
            continue
        # struct bpf_link_info: type, id, prog_id, then (8-aligned) union { tcx { ifindex, attach_type } }
        ifindex = int.from_bytes(raw[16:20], "little")
        attach_type = int.from_bytes(raw[20:24], "little")
        name = prog_name(pid) or ""
        if name.startswith(name_prefix):
            out.append(LinkInfo(lid, pid, name, ifindex, attach_type == BPF_TCX_INGRESS))
    return out


def link_detach_by_id(link_id: int) -> None:
    """Detach a link someone else holds (the program stops running; their fd stays)."""
    fd = _fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id)
    detach(fd)


def link_holders(link_id: int) -> list[int]:
    """Pids holding an fd to this link, from /proc/*/fdinfo (`link_id:` line)."""
    pids = []
    want = f"link_id:\t{link_id}\n"
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
                with open(f"{base}/{fd}") as f:
                    if want in f.read():
                        pids.append(int(pid))
                        break
            except OSError:
                continue
    return pids
