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


def _in_a_thread(fn):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_a_compile_runs_at_a_lower_priority_in_its_own_thread_only_and_then_as_before():
    import os

    from ebpftop.collectors import bpfcompile

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def compile_like():
        before = nice()
        with bpfcompile.yielding():
            during, main = nice(), os.getpriority(os.PRIO_PROCESS, os.getpid())
        return before, during, main, nice()

    before, during, main, after = _in_a_thread(compile_like)
    assert bpfcompile.may_raise_to(before)  # these tests run as root
    assert during == min(19, before + bpfcompile.NICE)
    assert main == before  # the process's main thread keeps its priority
    assert after == before


def test_where_the_priority_could_not_be_raised_back_it_is_not_lowered(monkeypatch):
    import os

    from ebpftop.collectors import bpfcompile

    monkeypatch.setattr(bpfcompile, "may_raise_to", lambda nice: False)

    def compile_like():
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with bpfcompile.yielding():
            return before, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before, during = _in_a_thread(compile_like)
    assert during == before


def test_without_cap_sys_nice_a_compile_keeps_the_threads_priority():
    """As under the agent's unit (no CAP_SYS_NICE, RLIMIT_NICE 0): a pooled thread lowered
    could never be raised back, so it is not lowered."""
    import subprocess
    import sys

    code = (
        "import os, threading\n"
        "from ebpftop.collectors import bpfcompile\n"
        "def f():\n"
        "    tid = threading.get_native_id()\n"
        "    before = os.getpriority(os.PRIO_PROCESS, tid)\n"
        "    with bpfcompile.yielding():\n"
        "        print(bpfcompile.may_raise_to(before), os.getpriority(os.PRIO_PROCESS, tid) == before)\n"
        "t = threading.Thread(target=f); t.start(); t.join()\n"
    )
    out = subprocess.run(
        ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    ).stdout.split()
    assert out == ["False", "True"]
