"""Process tags from /proc: OTel variables, comm, container id; unreadable or vanished
processes get a visible tag value instead of an error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need_root

from ebpftop.collectors.profiles import tags as t
from ebpftop.collectors.profiles.model import EXITED, KERNEL, UNREADABLE, tag

CID = "3f2a" + "0123456789abcdef" * 3 + "0123456789ab"


def test_resource_attributes_are_percent_decoded_and_bad_entries_skipped():
    attrs = t.parse_resource_attributes(
        "service.name=check%20out, deployment.environment=prod,junk,=x,k=a%2Cb"
    )
    assert attrs == {"service.name": "check out", "deployment.environment": "prod", "k": "a,b"}


def test_otel_service_name_wins_over_the_attribute():
    env = {
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_RESOURCE_ATTRIBUTES": (
            "service.name=other,service.version=2.1,deployment.environment.name=canary"
        ),
    }
    assert t.otel_tags(env) == {"service": "checkout", "version": "2.1", "env": "canary"}
    assert t.otel_tags({"OTEL_RESOURCE_ATTRIBUTES": "service.name=other"}) == {"service": "other"}
    assert t.otel_tags({}) == {}


def test_the_track_comes_from_the_kubernetes_pod_label():
    env = {
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=checkout,service.version=v1.1.0,k8s.pod.label.track=canary"
    }
    assert t.otel_tags(env) == {"service": "checkout", "version": "v1.1.0", "track": "canary"}


def test_huge_values_are_cut():
    assert len(t.otel_tags({"OTEL_SERVICE_NAME": "x" * 10_000})["service"]) == t.MAX_VALUE


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"0::/system.slice/docker-{CID}.scope\n", CID),
        (f"12:memory:/docker/{CID}\n1:cpu:/docker/{CID}\n", CID),
        (f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{CID}.scope\n", CID),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", None),
        ("4:memory:/process_api/e84e74a7faf235feb830059bbc126934\n", None),  # 32 hex: not a container id
        (f"0::/x/{CID}0\n", None),  # 65 hex digits is not an id either
    ],
)
def test_container_id_from_cgroup(text, expected):
    assert t.container_id(text) == expected


def test_fake_proc_tree(tmp_path):
    d = tmp_path / "42"
    d.mkdir()
    (d / "comm").write_text("checkout-svc\n")
    (d / "environ").write_bytes(
        b"PATH=/bin\0OTEL_SERVICE_NAME=checkout\0OTEL_RESOURCE_ATTRIBUTES=service.version=1.4\0"
    )
    (d / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    tags = t.process_tags(42, proc=str(tmp_path))
    assert tags == (
        ("comm", "checkout-svc"),
        ("container", CID[:12]),
        ("pid", "42"),
        ("service", "checkout"),
        ("version", "1.4"),
    )


def test_a_live_process_started_with_otel_variables():
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": "tagged",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,service.version=9.9",
    }
    proc = subprocess.Popen(["sleep", "30"], env=env)
    try:
        # Until the child has exec'd: before, it has our environment. The kernel names the
        # new image (comm) before it lays out the new environment, so wait for both.
        for _ in range(1000):
            tags = t.process_tags(proc.pid)
            if tag(tags, "comm") == "sleep" and Path(f"/proc/{proc.pid}/environ").read_bytes():
                tags = t.process_tags(proc.pid)
                break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert tag(tags, "service") == "tagged" and tag(tags, "env") == "test" and tag(tags, "version") == "9.9"
    assert tag(tags, "comm") == "sleep" and tag(tags, "pid") == str(proc.pid)


def test_a_process_that_is_gone_says_so():
    proc = subprocess.Popen(["true"])
    proc.wait()
    tags = t.process_tags(proc.pid, comm="true")
    assert tag(tags, "service") == EXITED and tag(tags, "comm") == "true"


def test_a_kernel_thread_is_named_as_one_not_as_gone():
    # kthreadd is pid 2 on every Linux; its environ read fails (ESRCH) or is empty
    tags = t.process_tags(2)
    assert tag(tags, "service") == KERNEL and tag(tags, "comm") == "kthreadd"
    assert t.is_kernel_thread(2) and not t.is_kernel_thread(os.getpid())


def test_another_users_environment_is_unreadable_not_an_error():
    need_root()  # we need to become another user to be refused
    code = f"import sys, ebpftop.collectors.profiles.tags as t; print(dict(t.process_tags({os.getpid()})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    tags = eval(out.stdout)
    assert tags["service"] == UNREADABLE
    assert tags["pid"] == str(os.getpid()) and tags["comm"]  # comm is world-readable


def test_cache_refreshes_on_new_comm_and_after_ttl(tmp_path):
    d = tmp_path / "7"
    d.mkdir()
    (d / "comm").write_text("a\n")
    (d / "environ").write_bytes(b"OTEL_SERVICE_NAME=one\0")
    now = [0.0]
    cache = t.TagCache(ttl=10, clock=lambda: now[0], proc=str(tmp_path))
    assert tag(cache.get(7, "a"), "service") == "one"
    (d / "environ").write_bytes(b"OTEL_SERVICE_NAME=two\0")
    assert tag(cache.get(7, "a"), "service") == "one"  # cached
    assert tag(cache.get(7, "b"), "service") == "two"  # exec'd: another comm, read again
    now[0] = 11
    assert tag(cache.get(7, "a"), "service") == "two"  # expired
    now[0] = 30
    cache.prune()
    assert not len(cache)


def test_cached_never_reads_and_early_refreshes_what_expires_soon(tmp_path):
    for pid in (7, 8):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_text("a\n")
        (d / "environ").write_bytes(b"OTEL_SERVICE_NAME=one\0")
    now = [0.0]
    cache = t.TagCache(ttl=10, clock=lambda: now[0], proc=str(tmp_path))
    assert cache.cached(7, "a", now[0]) is None  # never read: nothing to give
    cache.get(7, "a")
    now[0] = 4.0
    cache.get(8, "a")
    for pid in (7, 8):
        (tmp_path / str(pid) / "environ").write_bytes(b"OTEL_SERVICE_NAME=two\0")
    assert tag(cache.cached(7, "a", 9.9), "service") == "one"
    assert cache.cached(7, "a", 10.0) is None  # expired: the caller reads it (in a thread)
    now[0] = 6.0
    # 7 expires at 10, within 5 s: read again now with whatever else is read; 8 (at 14) is not
    assert tag(cache.get(7, "a", early=5), "service") == "two"
    assert tag(cache.get(8, "a", early=5), "service") == "one"
    assert tag(cache.cached(7, "a", 15.9), "service") == "two"
