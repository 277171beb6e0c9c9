"""A lab instance of a test module's own: up for the module, down after it, whatever happens.

    CFG = LabConfig(name="xy", subnet="198.18.2xx.0/24", prometheus_port=192xx)

    @pytest.fixture(scope="module")
    def lab():
        with running_lab(CFG) as layout:
            yield layout

Each module picks a name, subnet and Prometheus port no other module uses, so labs run
side by side (and a developer's default lab keeps running).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

from conftest import need, need_root

from ebpftop.lab import manager
from ebpftop.lab.layout import LabConfig, Layout

BINARIES = ("haproxy", "prometheus", "ip", "go")


@contextlib.contextmanager
def running_lab(config: LabConfig) -> Iterator[Layout]:
    need_root()
    for binary in BINARIES:
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    try:
        manager.up(config)
        yield Layout(config)
    finally:
        manager.down(config)
