"""Prove the dependency floors: install every dependency at the version pyproject.toml
names as its floor into a throw-away venv (made as scripts/setup.sh makes .venv), import
every module and run a fast subset of the tests there. `make floors` runs this.

The floors are read from pyproject.toml itself (each `>=X` becomes `==X`), so a floor
changed there is the floor tested here. Test-only tools (pytest, ...) resolve as usual.

Usage: python3 scripts/floors.py [--keep DIR]   (--keep: build the venv in DIR, keep it)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Fast, and between them they start the app, read config, talk to a real Prometheus
# through prometheus-api-client/requests/urllib3 and check the layers import cleanly.
TESTS = [
    "tests/test_app_pilot.py",
    "tests/test_config.py",
    "tests/test_canary_faults.py",
    "tests/test_canary_prometheus.py",
    "tests/test_import_hygiene.py",
]
_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def floors(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """name -> floor version of every [project].dependencies entry; ValueError when one
    has no `>=` floor (an unbounded dependency cannot be tested at its floor)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = _SPEC.match(dep)
        if not m:
            raise ValueError(f"cannot read the dependency {dep!r}")
        name, spec = m.group(1), m.group(3)
        found = [c.strip()[2:].strip() for c in spec.split(",") if c.strip().startswith(">=")]
        if len(found) != 1:
            raise ValueError(f"{dep!r}: no single `>=` floor")
        out[name] = found[0]
    return out


def modules() -> list[str]:
    """Every product module, by its installed name (ebpftop.<folder>.<...>)."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out = []
    for pkg, folder in dirs.items():
        for p in sorted((ROOT / folder).rglob("*.py")):
            parts = p.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(".".join((pkg, *parts)))
    return out


IMPORT_ALL = """
import importlib, importlib.metadata as md, json, sys
want, mods = json.loads(sys.argv[1]), json.loads(sys.argv[2])
got = {n: md.version(n) for n in want}
wrong = {n: (v, want[n]) for n, v in got.items() if v != want[n]}
if wrong:
    sys.exit(f"not installed at the floor (installed, floor): {wrong}")
for m in mods:
    importlib.import_module(m)
print(f"{len(want)} dependencies at their floors; imported {len(mods)} modules")
"""


def run(cmd: list[str], **kw) -> None:
    start = time.monotonic()
    print(
        "floors: $",
        " ".join(c if len(c) < 100 else c.strip().split("\n")[0][:60] + "…" for c in cmd),
        flush=True,
    )
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)
    print(f"floors: ({time.monotonic() - start:.0f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="build the venv in DIR and keep it")
    args = ap.parse_args()
    import json

    want = floors()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ebpftop-floors-"))
    start = time.monotonic()
    try:
        venv = tmp / "venv"
        if not (venv / "bin" / "python").exists():
            run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)])
        constraints = tmp / "floors.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in want.items()))
        print("floors:", ", ".join(f"{n}=={v}" for n, v in want.items()), flush=True)
        py = str(venv / "bin" / "python")
        pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        run([*pip, "--constraint", str(constraints), "-e", ".[test]"])
        run([py, "-c", IMPORT_ALL, json.dumps(want), json.dumps(modules())])
        run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *TESTS])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"floors: ok in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
