"""The profiles collector without BPF: pprof-only mode, failing endpoints, no root, off,
and the headless snapshot carrying profiles."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import need_root

from ebpftop.cli import headless
from ebpftop.collectors.profiles.collector import ProfilesCollector
from ebpftop.collectors.profiles.model import tag
from ebpftop.core.collector import SourceUnavailable
from ebpftop.core.settings import Settings

FIXTURE = pathlib.Path(__file__).with_name("data") / "pprof" / "labels.pb.gz"
TRACES = {"4bf92f3577b34da6a3ce929d0e0e4736": 164, "a3ce929d0e0e47364bf92f3577b34da6": 162}


@pytest.fixture
def endpoint():
    """A loopback pprof endpoint; `state["body"]` is what it serves."""
    state = {"body": FIXTURE.read_bytes(), "hits": 0}

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            state["hits"] += 1
            data = state["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    t.join()


async def _until(c: ProfilesCollector, ok, tries: int = 200):
    data = await c.collect()
    for _ in range(tries):
        if ok(data):
            return data
        await asyncio.sleep(0.05)
        data = await c.collect()
    return data


def test_pprof_only_mode_without_the_sampler(endpoint):
    url = endpoint["url"]

    async def run():
        c = ProfilesCollector(hz=0, pprof_urls=(url,), pprof_seconds=1, pprof_every=3600)
        await c.start()
        try:
            return await _until(c, lambda d: d.captures)
        finally:
            await c.close()

    data = asyncio.run(run())
    assert data.hz is None and data.windows == ()
    assert [(s.name, s.state) for s in data.sources] == [(url, "ok")]
    (prof,) = data.captures
    assert prof.name == f"pprof {url}" and prof.source == url
    assert prof.total_samples == 326 and prof.total_cpu_ns == 3_260_000_000
    assert {tag(g.tags, "trace_id"): g.samples for g in prof.groups} == TRACES
    assert prof.groups[0].top[0].name == "main.hotCheckout"


def test_a_failing_endpoint_degrades_with_its_reason_and_recovers(endpoint):
    url = endpoint["url"]
    endpoint["body"] = b"<html>not a profile</html>"

    async def run():
        c = ProfilesCollector(hz=0, pprof_urls=(url,), pprof_seconds=1, pprof_every=0.05)
        await c.start()
        try:
            bad = await _until(c, lambda d: d.sources[0].state == "error")
            endpoint["body"] = FIXTURE.read_bytes()
            good = await _until(c, lambda d: d.sources[0].state == "ok")
            return c, bad, good
        finally:
            await c.close()

    c, bad, good = asyncio.run(run())
    assert bad.sources[0].state == "error" and "not gzip" in bad.sources[0].message
    assert c.degraded_reason(bad) == f"{url}: {bad.sources[0].message}"
    assert bad.captures == ()
    assert good.captures[0].total_samples == 326 and c.degraded_reason(good) == ""


def test_on_demand_pprof_capture(endpoint):
    url = endpoint["url"]

    async def run():
        c = ProfilesCollector(hz=0, pprof_urls=(url,), pprof_seconds=1, pprof_every=0)
        await c.start()
        try:
            before = await c.collect()
            cap = await c.capture(url=url)
            after = await c.collect()
            return before, cap, after
        finally:
            await c.close()

    before, cap, after = asyncio.run(run())
    assert endpoint["hits"] == 1  # nothing fetched until asked
    assert before.sources[0].state == "pending" and before.captures == ()
    assert cap.name == f"capture pprof {url}" and cap.total_samples == 326
    assert after.captures == (cap,)


def test_nothing_configured_is_off_not_a_failure():
    c = ProfilesCollector(hz=0)
    with pytest.raises(SourceUnavailable) as exc:
        asyncio.run(c.start())
    assert exc.value.off and "no pprof URL" in exc.value.message


def test_capture_needs_a_target():
    c = ProfilesCollector(hz=0, pprof_urls=("http://127.0.0.1:9",), pprof_every=0)
    with pytest.raises(ValueError, match="needs a url or at least one tag"):
        asyncio.run(c.capture())


NOBODY = """
import asyncio, json, sys
from ebpftop.core.collector import SourceUnavailable
from ebpftop.collectors.profiles.collector import ProfilesCollector

async def main(urls):
    c = ProfilesCollector(hz=49, pprof_urls=tuple(urls), pprof_seconds=1, pprof_every=3600)
    await c.start()
    out = {}
    try:
        for _ in range(200):
            try:
                d = await c.collect()
            except SourceUnavailable as exc:
                out = {"unavailable": exc.message, "hint": exc.hint}
                break
            if d.sources[0].state != "pending" and all(s.state != "pending" for s in d.sources):
                out = {"sources": [[s.name, s.state, s.message] for s in d.sources],
                       "samples": [p.total_samples for p in d.captures]}
                break
            await asyncio.sleep(0.05)
    finally:
        await c.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1:]))
"""


def _as_nobody(*urls: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", NOBODY, *urls],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_without_root_the_sampler_says_why_and_pprof_still_works(endpoint):
    need_root()  # to become an unprivileged user
    alone = _as_nobody()
    assert alone["unavailable"] == "the BPF CPU sampler needs root"
    assert "sudo" in alone["hint"] and "--pprof" in alone["hint"]
    url = endpoint["url"]
    mixed = _as_nobody(url)
    assert mixed["sources"][0][:2] == ["bpf", "off"] and "needs root" in mixed["sources"][0][2]
    assert mixed["sources"][1][:2] == [url, "ok"] and mixed["samples"] == [326]


def test_headless_snapshot_carries_profiles(endpoint):
    url = endpoint["url"]
    settings = Settings(profile_hz=0, pprof_urls=(url,), pprof_seconds=1)
    # refresh 1 s: the fetch ends between the first and second sample
    result = asyncio.run(headless.run_snapshot(settings, ["profiles"], duration=2.5))
    assert result.ok, result.failures
    entry = result.doc["sources"]["profiles"]
    assert entry["health"]["state"] == "ok"
    (cap,) = entry["data"]["captures"]
    assert cap["total_samples"] == 326
    groups = {dict(map(tuple, g["tags"]))["trace_id"]: g for g in cap["groups"]}
    assert {k: g["samples"] for k, g in groups.items()} == TRACES
    assert groups["4bf92f3577b34da6a3ce929d0e0e4736"]["top"][0]["name"] == "main.hotCheckout"
    json.dumps(result.doc, allow_nan=False)  # the document the CLI prints


class FakeSampler:
    """Stands in for the BPF sampler: each drain returns `per_drain` samples of one stack
    of this very process, so tags come from the real /proc. The first drain's stack is
    new (named in the collector's thread hop), the later ones known (counted on the loop)."""

    def __init__(self, per_drain: int = 10) -> None:
        self.per_drain = per_drain
        self.running = False
        self.drains = 0
        self.named = 0

    def start(self):
        self.running = True

    def close(self):
        self.running = False

    def lost(self):
        return (0, 3)

    def housekeeping_due(self):
        return False

    def _raw(self):
        from ebpftop.collectors.profiles.sampler import RawStack

        return RawStack(os.getpid(), "pytest", ("main", "work", "hot"), self.per_drain)

    def drain_known(self):
        self.drains += 1
        return ([], ["entry"]) if self.drains == 1 else ([self._raw()], [])

    def name_known(self, entries):
        return [], entries  # nothing known: named in the thread hop

    def name_new(self, entries):
        self.named += len(entries)
        return [self._raw() for _ in entries]


def test_windows_slide_and_the_minute_is_rebuilt_every_five_seconds():
    now = [1000.0]
    fake = FakeSampler()

    async def run():
        c = ProfilesCollector(hz=49, sampler=fake, clock=lambda: now[0])
        await c.start()
        await asyncio.sleep(0)  # let the (fake) start finish in its thread
        for _ in range(1000):  # bounded; a loaded machine may not run the thread for a while
            if c._bpf_start.done():
                break
            await asyncio.sleep(0.01)
        out = []
        for _ in range(70):
            out.append(await c.collect())
            now[0] += 1.0
        await c.close()
        return out

    data = asyncio.run(run())
    assert fake.drains == 70 and fake.named == 1 and not fake.running
    short = [d.windows[0].total_samples for d in data]
    long_ = [d.windows[1].total_samples for d in data]
    assert short[:12] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 100]
    # rebuilt at 0, 5, 10 ... seconds: in between it holds the last summary
    assert long_[:11] == [10, 10, 10, 10, 10, 60, 60, 60, 60, 60, 110]
    assert long_[65] == 600  # full minute, the oldest drains aged out
    last = data[-1]
    assert last.lost_samples == 3 and last.hz == 49
    (group,) = last.windows[0].groups
    assert tag(group.tags, "pid") == str(os.getpid())
    assert group.top[0].name == "hot" and group.top[0].self_samples == 100


def test_a_urls_profiles_of_the_last_minute_are_shown_merged():
    """Fetched back to back, the profiles of the last PPROF_SPAN seconds are one profile
    (so a trace id from the canary's window still finds its samples); an older one
    leaves, and one that overlaps a newer one is the same samples served again."""
    from ebpftop.collectors.profiles.collector import PPROF_SPAN, _Fetched
    from ebpftop.collectors.profiles.model import StackSample, make_tags

    def fetched(start: float, trace: str, n: int) -> _Fetched:
        stack = StackSample(("main", "work"), n, make_tags({"trace_id": trace}))
        return _Fetched(start, start + 10, (stack,))

    url = "http://127.0.0.1:1/debug/pprof"
    c = ProfilesCollector(hz=0, pprof_urls=(url,))
    for i in range(7):  # 0..70 s: seven back-to-back 10 s profiles
        prof = c._keep(url, fetched(10.0 * i, f"t{i}", i + 1))
    assert PPROF_SPAN == 60.0
    traces = {tag(g.tags, "trace_id"): g.samples for g in prof.groups}
    assert traces == {f"t{i}": i + 1 for i in range(1, 7)}  # t0 began more than 60 s before t6 ended
    assert (prof.name, prof.source, prof.start, prof.end) == (f"pprof {url}", url, 10.0, 70.0)
    again = c._keep(url, fetched(60.0, "t6", 7))  # the last profile served a second time
    assert {tag(g.tags, "trace_id"): g.samples for g in again.groups} == traces
    # the default cadence (a 10 s profile every 60 s): each profile is shown alone
    sparse = ProfilesCollector(hz=0, pprof_urls=(url,))
    sparse._keep(url, fetched(0.0, "early", 1))
    alone = sparse._keep(url, fetched(60.0, "late", 2))
    assert [tag(g.tags, "trace_id") for g in alone.groups] == ["late"] and alone.start == 60.0
