"""The jiffies <-> CLOCK_MONOTONIC calibration (collectors/kclock.py), also where a
container runtime masks /proc/timer_list (the DaemonSet's pods: issue 23's image smoke
test found flows down there): the kernel reads both clocks in a BPF test run."""

from __future__ import annotations

import os
import time

import pytest
from conftest import need_root

from ebpftop.collectors import kclock, kclock_probe


@pytest.fixture(autouse=True)
def fresh():
    kclock.calibration.cache_clear()
    yield
    kclock.calibration.cache_clear()


def test_the_bpf_probe_reads_the_same_pair_as_timer_list():
    need_root()
    j_list, m_list = kclock._timer_list()
    j_probe, m_probe = kclock_probe.sample()
    assert 0 <= m_probe - m_list < 1_000_000_000  # read after, within a second
    hz = kclock.hz()
    # the same clock: jiffies advanced by the elapsed time, within a tick either way
    expected = j_list + (m_probe - m_list) * hz // 1_000_000_000
    assert abs(j_probe - expected) <= 1, (j_probe, expected)
    assert abs(m_probe - time.monotonic_ns()) < 1_000_000_000


def test_a_masked_timer_list_falls_back_to_the_probe(monkeypatch, tmp_path):
    need_root()
    monkeypatch.setattr(kclock, "TIMER_LIST", str(tmp_path / "absent"))
    hz, _, m0 = kclock.calibration()
    now = time.monotonic_ns()
    assert abs(m0 - now) < 5_000_000_000
    assert abs(kclock.jiffies_at(now) - kclock_probe.sample()[0]) <= 2
    assert abs(kclock.mono_of(kclock.jiffies_at(now)) - now) <= 1_000_000_000 // hz


def test_both_failing_says_what_each_needs(monkeypatch, tmp_path):
    monkeypatch.setattr(kclock, "TIMER_LIST", str(tmp_path / "absent"))

    def refused() -> tuple[int, int]:
        raise OSError(1, os.strerror(1))

    monkeypatch.setattr(kclock_probe, "sample", refused)
    with pytest.raises(OSError) as exc:
        kclock.calibration()
    text = str(exc.value)
    assert "absent" in text and "the BPF clock probe failed too: Operation not permitted" in text
    assert "need /proc/timer_list or bpf(2) test runs" in text
