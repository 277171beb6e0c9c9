"""The few bpf(2) commands the pinned rule set needs, on raw fds and bytes.

Listing, updating and removing rules work on the pinned objects alone: no bcc compile
(seconds) unless the program itself has to be loaded.
"""

from __future__ import annotations

import ctypes
import errno
import os
from functools import lru_cache
from pathlib import Path

from ..bpfsys import BpfError as TcxError
from ..bpfsys import bpf as _bpf
from ..bpfsys import obj_info as obj_info  # re-exported: datapath reads map info through here

MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 1, 2, 3, 4
OBJ_PIN, OBJ_GET = 6, 7


class _Elem(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _Obj(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class _Attr(ctypes.Union):
    _fields_ = [("elem", _Elem), ("obj", _Obj), ("_raw", ctypes.c_uint8 * 128)]


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    attr = _Attr()
    attr.obj.pathname = ctypes.addressof(p)
    attr.obj.bpf_fd = fd
    _bpf(OBJ_PIN, attr)


def obj_get(path: str) -> int:
    p = ctypes.create_string_buffer(path.encode())
    attr = _Attr()
    attr.obj.pathname = ctypes.addressof(p)
    return _bpf(OBJ_GET, attr)


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


class Map:
    """A map fd with its key and value sizes (from the kernel, not assumed)."""

    PERCPU_TYPES = frozenset({5, 6, 10})  # percpu hash, percpu array, lru percpu hash

    def __init__(self, fd: int) -> None:
        self.fd = fd
        info = obj_info(fd, 80)
        self.type, self.id, self.key_size, self.value_size, self.max_entries = (
            int.from_bytes(info[i : i + 4], "little") for i in range(0, 20, 4)
        )
        self.percpu = self.type in self.PERCPU_TYPES
        self._vlen = ((self.value_size + 7) // 8 * 8) * possible_cpus() if self.percpu else self.value_size

    @classmethod
    def open(cls, path: str) -> Map:
        return cls(obj_get(path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _elem(self, key: ctypes.Array[ctypes.c_char], value: ctypes.Array[ctypes.c_char] | None) -> _Attr:
        attr = _Attr()
        attr.elem.map_fd = self.fd
        attr.elem.key = ctypes.addressof(key)
        attr.elem.value = ctypes.addressof(value) if value is not None else 0
        return attr

    def lookup(self, key: bytes) -> bytes | None:
        k = ctypes.create_string_buffer(key, self.key_size)
        v = ctypes.create_string_buffer(self._vlen)
        try:
            _bpf(MAP_LOOKUP_ELEM, self._elem(k, v))
        except TcxError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key) or b""
        step = (self.value_size + 7) // 8 * 8
        return [raw[i : i + self.value_size] for i in range(0, len(raw), step)]

    def update(self, key: bytes, value: bytes) -> None:
        k = ctypes.create_string_buffer(key, self.key_size)
        if self.percpu and len(value) == self.value_size:
            step = (self.value_size + 7) // 8 * 8
            value = (value.ljust(step, b"\0")) * possible_cpus()
        v = ctypes.create_string_buffer(value, self._vlen)
        _bpf(MAP_UPDATE_ELEM, self._elem(k, v))

    def delete(self, key: bytes) -> None:
        k = ctypes.create_string_buffer(key, self.key_size)
        try:
            _bpf(MAP_DELETE_ELEM, self._elem(k, None))
        except TcxError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        cur: bytes | None = None
        while True:
            k = ctypes.create_string_buffer(cur or b"", self.key_size)
            nxt = ctypes.create_string_buffer(self.key_size)
            attr = _Attr()
            attr.elem.map_fd = self.fd
            attr.elem.key = ctypes.addressof(k) if cur is not None else 0
            attr.elem.value = ctypes.addressof(nxt)
            try:
                _bpf(MAP_GET_NEXT_KEY, attr)
            except TcxError as exc:
                if exc.errno == errno.ENOENT:
                    return out
                raise
            cur = nxt.raw
            out.append(cur)
            if len(out) > self.max_entries:  # a map changing under us; never loop forever
                return out
