"""The declared dependencies match what the product imports.

Every third-party module the product imports comes from a dependency pyproject.toml
declares with a floor (`make floors` installs each at that floor and runs the app's
tests there: scripts/floors.py); a dependency whose private modules the product imports
carries an upper bound, since a private API may change in any release.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import floors  # noqa: E402  (scripts/ is not a package)

PRODUCT = ("core", "collectors", "actions", "tui", "cli", "lab", "themes")
# Not from PyPI: Debian's python3-bpfcc must match the libbcc it drives (scripts/setup.sh)
SYSTEM = {"bcc"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    """normalised distribution name -> its requirement text."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", d).group(0)): d for d in deps}


def _third_party_imports() -> dict[str, set[str]]:
    """top-level module -> the dotted names the product imports from it (absolute only)."""
    out: dict[str, set[str]] = {}
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "ebpftop":
                        out.setdefault(top, set()).add(name)
    return out


def _dists_of(module: str) -> set[str]:
    return {_norm(d) for d in md.packages_distributions().get(module, [])}


def test_every_third_party_import_is_declared():
    declared = _declared()
    missing = {
        top: sorted(_dists_of(top)) or ["(not installed)"]
        for top in _third_party_imports()
        if top not in SYSTEM and not _dists_of(top) & set(declared)
    }
    assert not missing, f"imported but not in [project].dependencies: {missing}"


def test_private_apis_in_use_have_an_upper_bound():
    declared = _declared()
    for top, names in _third_party_imports().items():
        private = sorted(n for n in names if any(p.startswith("_") for p in n.split(".")[1:]))
        if not private or top in SYSTEM:
            continue
        for dist in _dists_of(top) & set(declared):
            assert "<" in declared[dist], f"{declared[dist]!r}: the product imports {private}: bound it"


def test_every_dependency_has_one_floor_that_make_floors_installs():
    got = floors.floors()
    assert set(map(_norm, got)) == set(_declared())
    assert got["textual"] and all(re.fullmatch(r"\d+(\.\d+)*", v) for v in got.values()), got


def test_a_dependency_without_a_floor_is_refused(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["textual>=6.0.0,<9", "psutil"]\n')
    try:
        floors.floors(bad)
    except ValueError as exc:
        assert "psutil" in str(exc)
    else:
        raise AssertionError("a dependency without a floor was accepted")
