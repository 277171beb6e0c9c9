"""Collectors know nothing of Textual: the headless mode and the tests depend on it."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = ("textual", "textual_plotext", "plotext", "rich", "ebpftop.tui", "ebpftop.cli", "ebpftop.themes")
TEXTUAL_FREE = ("core", "collectors", "actions", "lab")  # every layer below tui


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_collector_module_imports_textual_statically():
    offenders = []
    for path in sorted(p for d in TEXTUAL_FREE for p in (ROOT / d).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_importing_every_collector_module_loads_no_textual():
    mods = sorted(
        f"ebpftop.{d}." + ".".join(p.relative_to(ROOT / d).with_suffix("").parts)
        for d in TEXTUAL_FREE
        for p in (ROOT / d).rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')"
        " or m.startswith(('ebpftop.tui', 'ebpftop.cli')))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_generic_top_level_package_installed():
    """Installed, the code lives under `ebpftop.` only: no `tui` or `collectors` module."""
    code = (
        "import importlib.util as u; "
        "print(*(u.find_spec(n) for n in ('core', 'collectors', 'actions', 'tui', 'cli', 'lab', 'themes')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.stdout.strip() == " ".join(["None"] * 7), proc.stdout + proc.stderr


def test_every_package_folder_is_installed():
    """pyproject lists the packages one by one (setuptools cannot add the `ebpftop.`
    prefix): a folder left out works in the editable checkout and is missing from a
    wheel, so a non-editable install fails at its first import."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for package, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
