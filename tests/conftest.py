"""Shared test fixtures.

Tests that need root or BPF call `need_root()` (or use the `root` fixture): locally
they skip with the reason; with CI=true they fail, because CI runs as root and a skip
there would hide a broken datapath.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when `condition` does not hold."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (BPF, namespaces)")


@pytest.fixture
def root() -> None:
    need_root()
