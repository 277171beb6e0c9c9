"""bench/RESULTS.md is shared: each benchmark replaces only its own `## name` section."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\nWritten by `make bench` (each section by its own script under bench/). "
    "Figures are from the machine named in each section.\n"
)


def machine() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return f"{platform.node()}, kernel {platform.release()}, {os.cpu_count()} CPUs, {now:%Y-%m-%d %H:%M} UTC"


def write_section(name: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"## {name}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")
