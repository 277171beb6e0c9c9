"""Python's view of rules.h: limits, flags and struct layouts shared with rules.bpf.c.

The numbers are read from the header at import, so the C and the compiler/datapath
cannot disagree on them; the struct setv parts (offset, size) are computed from them
here, and test_rules_layout checks those against what bcc's compiler lays out.
"""

from __future__ import annotations

import ast
import operator
import re
import struct
from collections.abc import Callable
from pathlib import Path

HEADER = Path(__file__).resolve().parent / "rules.h"

_DEFINE = re.compile(r"^#define[ \t]+([A-Z][A-Z0-9_]*)[ \t]+(.+?)[ \t]*(?:/\*.*)?$", re.MULTILINE)
_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.floordiv,  # C integer division
    ast.LShift: operator.lshift,
    ast.BitOr: operator.or_,
}


def _value(node: ast.expr, known: dict[str, int]) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left, known), _value(node.right, known))
    raise ValueError(f"rules.h: not an integer expression of earlier names: {ast.unparse(node)!r}")


def defines(text: str) -> dict[str, int]:
    """Every object-like `#define NAME value` of `text`, evaluated (C integer suffixes
    dropped); ValueError for a value that is not an integer expression."""
    out: dict[str, int] = {}
    for name, raw in _DEFINE.findall(text):
        if name.endswith("_H"):  # the include guard
            continue
        expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", raw.strip())
        out[name] = _value(ast.parse(expr, mode="eval").body, out)
    return out


H = defines(HEADER.read_text())

MAX_RULES: int = H["MAX_RULES"]
WORDS: int = H["WORDS"]
MAX_SLOTS: int = H["MAX_SLOTS"]
CHILD: int = H["CHILD"]
NODES: int = H["NODES"]
ACLS: int = H["ACLS"]
PROTO_ENTRIES: int = H["PROTO_ENTRIES"]
PCLS: int = H["PCLS"]
PINT: int = H["PINT"]
HSLOTS: int = H["HSLOTS"]
WILDS: int = H["WILDS"]
ACTION_CODES: dict[str, int] = {a.lower(): H[f"ACTION_{a}"] for a in ("COUNT", "ALLOW", "DENY")}
DEBRUIJN: int = H["DEBRUIJN"]
W_SRC4, W_SRC6, W_DST4, W_DST6 = H["W_SRC4"], H["W_SRC6"], H["W_DST4"], H["W_DST6"]
W_SPORT, W_DPORT = H["W_SPORT"], H["W_DPORT"]
F_SRC4, F_SRC6, F_DST4, F_DST6 = H["F_SRC4"], H["F_SRC6"], H["F_DST4"], H["F_DST6"]
F_SPORT, F_DPORT, F_IFDIR, F_TTL = H["F_SPORT"], H["F_DPORT"], H["F_IFDIR"], H["F_TTL"]
I_SRC4, I_DST4, I_SPORT, I_DPORT = H["I_SRC4"], H["I_DST4"], H["I_SPORT"], H["I_DPORT"]
H_SRC4, H_DST4, T_SRC4, T_DST4 = H["H_SRC4"], H["H_DST4"], H["T_SRC4"], H["T_DST4"]
P_SPORT, P_DPORT = H["P_SPORT"], H["P_DPORT"]

# struct counter / rule, the head of struct cfg, struct base's head (little-endian: BPF
# runs in the host's order, and this is x86-64/arm64 only)
COUNTER = struct.Struct("<QQQ")  # packets, bytes, last hit (jiffies); then a u64 of padding
COUNTER_SIZE = 32
RULE = struct.Struct("<IIQ")  # slot, action, expires
META = struct.Struct("<QII")  # struct cfg: generation, number of rules, field flags
INLINE = struct.Struct("<II")  # struct inl, four of them after META: src4, dst4, sport, dport
BASE_HEAD: int = H["BASE_HEAD"]  # struct base: folded generation, padding, then a counter per slot


def _layout(parts: tuple[tuple[str, int], ...]) -> tuple[dict[str, tuple[int, int]], int]:
    """name -> (offset, size) of parts laid end to end, and the total."""
    out, at = {}, 0
    for name, size in parts:
        out[name] = (at, size)
        at += size
    return out, at


_VEC = 8 * WORDS  # struct bits
_PINT = 2 * PINT + PINT * _VEC
_PTAB = 65536 * 2 + PCLS * _VEC
_A4TAB = HSLOTS * 64 + 65536 * 2 + NODES * 256 * 2 + ACLS * _VEC
# struct cfg and its padding to the next 64-byte line
CFG_SIZE = META.size + 4 * INLINE.size + WILDS * _VEC
# struct setv: one set's map value, parts in order; every part a multiple of 64 bytes
SET_PARTS, SET_SIZE = _layout(
    (
        ("cfg", -(-CFG_SIZE // 64) * 64),
        ("ctz", 64),
        ("spi", _PINT),
        ("dpi", _PINT),
        ("proto", PROTO_ENTRIES * _VEC),
        ("rules", MAX_RULES * RULE.size),
        ("exp", MAX_RULES * 8),
        ("alive", (MAX_RULES + 2) * _VEC),
        ("sport", _PTAB),
        ("dport", _PTAB),
        ("src4", _A4TAB),
        ("dst4", _A4TAB),
    )
)
