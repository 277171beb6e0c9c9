"""rules.h is the one definition of the rules datapath's numbers and layouts.

collectors/rules/layout.py reads the header's #defines at import and computes struct
setv's parts from them; here bcc's compiler (the one that builds rules.bpf.c) checks
every number and every offset and size Python uses, with _Static_assert: C and Python
cannot disagree without this test failing.
"""

from __future__ import annotations

import re

import pytest
from conftest import need_root

from ebpftop.collectors.rules import compile as rules_compile
from ebpftop.collectors.rules import datapath, layout


def test_the_program_includes_the_header_and_retypes_none_of_it():
    src = datapath.SRC.read_text()
    assert '#include "rules.h"' in src
    retyped = set(re.findall(r"^#define\s+(\w+)", src, re.MULTILINE)) & set(layout.H)
    assert not retyped, f"rules.bpf.c defines {retyped} again: they belong in rules.h"
    structs = set(re.findall(r"^struct (\w+) \{", layout.HEADER.read_text(), re.MULTILINE))
    assert {"bits", "rule", "cfg", "counter", "base", "setv"} <= structs
    assert not structs & set(re.findall(r"^struct (\w+) \{", src, re.MULTILINE))


def test_a_number_changed_in_the_header_changes_python():
    text = layout.HEADER.read_text().replace("#define MAX_RULES 256\n", "#define MAX_RULES 128\n")
    h = layout.defines(text)
    assert (h["MAX_RULES"], h["WORDS"], h["MAX_SLOTS"]) == (128, 2, 256)
    # and the compiler and datapath take theirs from there
    assert rules_compile.MAX_RULES == datapath.MAX_RULES == layout.H["MAX_RULES"] == 256
    assert rules_compile.ACTION_CODES == {"count": 0, "allow": 1, "deny": 2}
    with pytest.raises(ValueError, match="not an integer expression"):
        layout.defines("#define X (Y + 1)\n")


def _expectations() -> list[tuple[str, int]]:
    """(C expression, the value Python uses) for every number and layout it relies on."""
    out = [(name, value) for name, value in layout.H.items()]
    end = 0
    for part, (offset, size) in layout.SET_PARTS.items():
        if part != "cfg":  # cfg is followed by explicit padding (pad0) up to the next line
            out.append((f"__builtin_offsetof(struct setv, {part})", offset))
            out.append((f"sizeof(((struct setv *)0)->{part})", size))
        end = offset + size
    out += [
        ("__builtin_offsetof(struct setv, ctz)", layout.SET_PARTS["cfg"][1]),
        ("sizeof(struct setv)", end),
        ("sizeof(struct setv)", layout.SET_SIZE),
        ("sizeof(struct setraw)", layout.SET_SIZE),
        ("__builtin_offsetof(struct cfg, src4)", layout.META.size),
        ("__builtin_offsetof(struct cfg, sport)", layout.META.size + 2 * layout.INLINE.size),
        ("__builtin_offsetof(struct cfg, wild)", layout.META.size + 4 * layout.INLINE.size),
        ("sizeof(struct cfg)", layout.CFG_SIZE),
        ("sizeof(struct inl)", layout.INLINE.size),
        ("sizeof(struct rule)", layout.RULE.size),
        ("__builtin_offsetof(struct rule, expires)", 8),
        ("sizeof(struct counter)", layout.COUNTER_SIZE),
        ("__builtin_offsetof(struct counter, last)", 2 * 8),
        ("sizeof(struct base)", layout.BASE_HEAD + layout.MAX_SLOTS * layout.COUNTER_SIZE),
        ("sizeof(struct bits)", 8 * layout.WORDS),
        ("sizeof(((struct cfg *)0)->wild) / sizeof(struct bits)", layout.WILDS),
    ]
    return out


def _compile(checks: list[tuple[str, int]]) -> None:
    from bcc import BPF

    text = '#include "rules.h"\n' + "".join(
        f'_Static_assert(({expr}) == {value}ULL, "{expr} is not {value} in C");\n' for expr, value in checks
    )
    text += "int ebpftop_layout(void *ctx) { return 0; }\n"
    b = BPF(text=text.encode(), cflags=[f"-I{datapath.HERE}"])
    b.cleanup()


def test_bccs_compiler_lays_out_what_python_computes():
    need_root()
    checks = _expectations()
    assert len(checks) > 60
    _compile(checks)


def test_a_disagreement_fails_to_compile():
    need_root()
    offset, _ = layout.SET_PARTS["spi"]
    with pytest.raises(Exception, match="Failed to compile"):  # bcc raises a bare Exception
        _compile([("__builtin_offsetof(struct setv, spi)", offset + 64)])
