"""Every bcc compilation holds collectors/bpfcompile.COMPILE_LOCK.

libbcc/LLVM is not thread-safe (iovisor/bcc#4500): flows and profiles compiling at the
same time in worker threads crashed `ebpftop snapshot` with SIGSEGV about two runs in
three. The crash is a race, so a runtime test would pass by luck; this checks the code.
"""

from __future__ import annotations

import ast
import pathlib
import threading

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _is_bpf_constructor(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "BPF") or (isinstance(f, ast.Attribute) and f.attr == "BPF")


def _holds_lock(with_node: ast.With) -> bool:
    for item in with_node.items:
        e = item.context_expr
        if (isinstance(e, ast.Name) and e.id == "COMPILE_LOCK") or (
            isinstance(e, ast.Attribute) and e.attr == "COMPILE_LOCK"
        ):
            return True
    return False


def unlocked_compilations(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    bad = []
    for node in ast.walk(tree):
        if not _is_bpf_constructor(node):
            continue
        up = parents.get(node)
        while up is not None and not (isinstance(up, ast.With) and _holds_lock(up)):
            up = parents.get(up)
        if up is None:
            bad.append(f"{name}:{node.lineno}")
    return bad


def test_every_bpf_constructor_in_collectors_holds_the_compile_lock():
    bad: list[str] = []
    found = 0
    for path in sorted((ROOT / "collectors").rglob("*.py")):
        text = path.read_text()
        if "BPF(" not in text:
            continue
        found += 1
        bad += unlocked_compilations(text, str(path.relative_to(ROOT)))
    assert found >= 2, "expected the flows and profiles compilations to be found"
    assert not bad, "BPF(...) outside `with COMPILE_LOCK:`: " + ", ".join(bad)


def test_the_checker_sees_an_unlocked_call():
    src = (
        "from bcc import BPF\n"
        "def f():\n"
        "    with COMPILE_LOCK:\n"
        "        a = BPF(text='')\n"
        "    b = BPF(text='')\n"
        "    with open('x'):\n"
        "        c = bcc.BPF(text='')\n"
    )
    assert unlocked_compilations(src, "x.py") == ["x.py:5", "x.py:7"]


def test_the_lock_is_one_process_wide_lock():
    from ebpftop.collectors import bpfcompile

    assert isinstance(bpfcompile.COMPILE_LOCK, type(threading.Lock()))
