"""What the scripts that record the real lab for the README pictures share
(make_lab_recording.py, make_fleet_recording.py): saying each step, running the real
CLI, waiting for the screen, and writing a trimmed recording reproducibly."""

from __future__ import annotations

import gzip
import json
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

CLI = [sys.executable, "-m", "ebpftop.cli.main"]


def read_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_gz(objs: list[dict[str, Any]], out: pathlib.Path) -> int:
    """One JSON line per object, gzip'd with no name and no time in its header (the same
    bytes from the same frames); returns the uncompressed size."""
    text = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "wb") as f,
        gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as z,
    ):
        z.write(text.encode())
    return len(text)


class Steps:
    """say / run / wait, each line prefixed with the script's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def say(self, msg: str) -> None:
        print(f"{self.name}: {msg}", flush=True)

    def run(self, argv: list[str], *, check: bool = True, env: dict[str, str] | None = None) -> int:
        self.say("$ " + " ".join(argv[2:] if argv[:3] == CLI else argv))
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL)
        if check and p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(argv)}")
        return p.returncode

    def wait(self, app: Any, what: str, predicate: Callable[[str], bool], timeout: float) -> None:
        if app.wait_for(predicate, timeout) is None:
            self.say(f"the screen never showed {what}; it shows:\n{app.text()}")
            raise SystemExit(f"timed out waiting for {what} (exit status {app.proc.poll()})")
