"""Shared test fixtures.

Tests that need root or BPF call `need_root()` (or use the `root` fixture): locally
they skip with the reason; with CI=true they fail, because CI runs as root and a skip
there would hide a broken datapath.
"""

from __future__ import annotations

import contextlib
import os
import signal

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


@contextlib.contextmanager
def default_signals(*signos: int):
    """Children started inside get these signals' usual action: a test runner started
    under nohup (SIGHUP) or as a background job (SIGINT) ignores them, and an ignored
    signal stays ignored in every child, so a test that stops one with it would hang."""
    saved = {s: signal.getsignal(s) for s in signos}
    try:
        for s in signos:
            if saved[s] == signal.SIG_IGN:
                signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
