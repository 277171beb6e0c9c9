"""Run every benchmark under bench/ (files named *_bench.py), each writing its section."""

from __future__ import annotations

import pathlib
import runpy
import sys

here = pathlib.Path(__file__).parent
sys.path.insert(0, str(here))
names = sys.argv[1:]
for path in sorted(here.glob("*_bench.py")):
    if names and path.stem.removesuffix("_bench") not in names:
        continue
    print(f"== {path.name}", flush=True)
    runpy.run_path(str(path), run_name="__main__")
