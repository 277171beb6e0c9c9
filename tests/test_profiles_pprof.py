"""pprof: the Go fixture parses to what `go tool pprof` reports; hostile bodies and
endpoints give clear errors; a live Go service is scraped when a Go toolchain exists."""

from __future__ import annotations

import asyncio
import gzip
import pathlib
import shutil
import socket
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpftop.collectors.profiles import aggregate, pprof
from ebpftop.collectors.profiles import profile_pb2 as pb
from ebpftop.collectors.profiles.model import tag

DATA = pathlib.Path(__file__).with_name("data") / "pprof"
FIXTURE = DATA / "labels.pb.gz"

# What `go tool pprof` (go1.19.8) reports for tests/data/pprof/labels.pb.gz; the full
# output is in tests/data/pprof/labels.go-tool-pprof.txt.
#   -top -sample_index=samples: "Total samples = 326"
#   -top -sample_index=cpu:     "Total samples = 3260ms"
TOTAL_SAMPLES = 326
TOTAL_CPU_NS = 3_260_000_000
#   flat / cum (samples) per function
TOP = {
    "main.hotCheckout": (160, 164),
    "main.hotSearch": (159, 162),
    "runtime.asyncPreempt": (7, 7),
    "main.request": (0, 326),
    "main.request.func1": (0, 326),
    "runtime/pprof.Do": (0, 326),
}
#   -tags -sample_index=samples
TRACE_IDS = {"4bf92f3577b34da6a3ce929d0e0e4736": 164, "a3ce929d0e0e47364bf92f3577b34da6": 162}
SPAN_IDS = {"00f067aa0ba902b7": 164, "b7ad6b7169203331": 162}


def body() -> bytes:
    return FIXTURE.read_bytes()


# --- the fixture ------------------------------------------------------------------------


def test_fixture_totals_match_go_tool_pprof():
    p = pprof.parse_body(body(), source="fixture")
    assert p.sample_types == (("samples", "count"), ("cpu", "nanoseconds"))
    assert p.period_type == ("cpu", "nanoseconds") and p.period == 10_000_000
    assert p.total_samples == TOTAL_SAMPLES
    assert p.total_cpu_ns == TOTAL_CPU_NS
    stats = {f.name: (f.self_samples, f.total_samples) for f in aggregate.top_functions(p.stacks)}
    assert stats == TOP


def test_fixture_labels_become_tags_with_go_tool_pprof_counts():
    p = pprof.parse_body(body(), source="http://example/")
    for key, expected in (("trace_id", TRACE_IDS), ("span_id", SPAN_IDS)):
        groups = aggregate.group_by(p.stacks, [key])
        assert {tag(g.tags, key): g.samples for g in groups} == expected
    assert all(tag(s.tags, "source") == "http://example/" for s in p.stacks)
    # each trace's hot function leads its own top list
    sel = aggregate.select_for_trace(
        [aggregate.summarize("pprof", "u", 0, 1, p.stacks)], "4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert sel.matched_trace and sum(s.count for s in sel.stacks) == 164
    assert aggregate.top_functions(sel.stacks, 1)[0].name == "main.hotCheckout"


def test_frames_are_root_first():
    p = pprof.parse_body(body())
    heaviest = max(p.stacks, key=lambda s: s.count)
    assert heaviest.frames[0] == "main.request" and heaviest.frames[-1] == "main.hotCheckout"


# --- hostile bodies ---------------------------------------------------------------------


def test_truncated_body_is_named_truncated():
    with pytest.raises(pprof.PprofError, match="truncated gzip"):
        pprof.parse_body(body()[: len(body()) // 2])


def test_not_gzip_is_named_not_gzip():
    raw = gzip.decompress(body())  # a valid profile, but not gzip'd
    with pytest.raises(pprof.PprofError, match="not gzip"):
        pprof.parse_body(raw)
    with pytest.raises(pprof.PprofError, match="not gzip"):
        pprof.parse_body(b"<html>404 page not found</html>")


def test_empty_body():
    with pytest.raises(pprof.PprofError, match="empty body"):
        pprof.parse_body(b"")


def test_wrong_message_is_not_a_profile():
    # A valid protobuf, gzip'd, but of another message: no string table, no sample types.
    other = pb.Function(id=3, name=1, start_line=7).SerializeToString()
    with pytest.raises(pprof.PprofError, match="not a pprof profile"):
        pprof.parse_body(gzip.compress(other))
    with pytest.raises(pprof.PprofError, match="not a pprof profile"):
        pprof.parse_body(gzip.compress(b'{"json": "is not protobuf"}'))


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"\0" * (8 << 20), compresslevel=9)
    assert len(bomb) < 64 << 10
    with pytest.raises(pprof.PprofError, match="too large: more than 1 MiB"):
        pprof.parse_body(bomb, limit=1 << 20)


def test_corrupt_gzip():
    b = bytearray(body())
    b[30:60] = bytes(30)
    with pytest.raises(pprof.PprofError, match=r"corrupt gzip|truncated gzip"):
        pprof.parse_body(bytes(b))


def _profile(**kw) -> pb.Profile:
    p = pb.Profile(string_table=["", "samples", "count", "f"])
    p.sample_type.add(type=1, unit=2)
    p.function.add(id=1, name=3)
    p.location.add(id=1).line.add(function_id=1)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_indices_that_point_nowhere_say_where():
    p = _profile()
    p.sample.add(location_id=[9], value=[1])
    with pytest.raises(pprof.PprofError, match=r"sample\[0\]: location id 9 not in the profile"):
        pprof.parse(p.SerializeToString())
    p = _profile()
    s = p.sample.add(location_id=[1], value=[1])
    s.label.add(key=99, str=1)
    with pytest.raises(pprof.PprofError, match=r"sample\[0\]\.label\[0\]\.key: string index 99 out of range"):
        pprof.parse(p.SerializeToString())
    p = _profile()
    p.sample.add(location_id=[1], value=[1, 2])
    with pytest.raises(pprof.PprofError, match=r"sample\[0\]: 2 values for 1 sample types"):
        pprof.parse(p.SerializeToString())


def test_numeric_label_and_unsymbolised_location():
    p = _profile()
    p.string_table.extend(["bytes", "size"])
    p.location.add(id=2, address=0xDEAD)
    s = p.sample.add(location_id=[2, 1], value=[4])
    s.label.add(key=5, num=512, num_unit=4)
    prof = pprof.parse(p.SerializeToString())
    (stack,) = prof.stacks
    assert stack.frames == ("f", "0xdead") and stack.count == 4
    assert tag(stack.tags, "size") == "512 bytes"
    assert prof.total_cpu_ns is None  # no nanoseconds sample type: no CPU time, not 0


def test_huge_labels_and_names_are_cut():
    p = _profile()
    p.string_table.extend(["k" * 5000, "v" * 100_000])
    p.function[0].name = 5
    s = p.sample.add(location_id=[1], value=[1])
    s.label.add(key=4, str=5)
    (stack,) = pprof.parse(p.SerializeToString()).stacks
    ((k, v),) = stack.tags
    assert (len(k), len(v)) == (pprof.MAX_LABEL, pprof.MAX_LABEL)
    assert len(stack.frames[0]) == pprof.MAX_NAME


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096), st.booleans())
def test_any_bytes_parse_or_fail_clearly(data, wrap):
    try:
        prof = pprof.parse_body(gzip.compress(data) if wrap else data, limit=1 << 20)
    except pprof.PprofError as exc:
        assert str(exc)
    else:
        assert prof.total_samples == sum(s.count for s in prof.stacks)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 948), st.integers(0, 255))
def test_a_flipped_byte_in_the_fixture_fails_clearly_or_parses(pos, value):
    b = bytearray(body())
    b[pos] = value
    try:
        pprof.parse_body(bytes(b))
    except pprof.PprofError as exc:
        assert str(exc)


def test_profile_url():
    assert pprof.profile_url("http://h:6060", 5) == "http://h:6060/debug/pprof/profile?seconds=5"
    assert pprof.profile_url("http://h:6060/debug/pprof/", 2) == "http://h:6060/debug/pprof/profile?seconds=2"
    assert pprof.profile_url("http://h/x/profile?seconds=30", 2) == "http://h/x/profile?seconds=30"


# --- endpoints --------------------------------------------------------------------------


class _Server:
    """A loopback HTTP server answering every GET with `respond(handler)`."""

    def __init__(self, respond) -> None:
        outer = self
        self.paths: list[str] = []

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.paths.append(self.path)
                respond(self)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _send(h, status: int, data: bytes, headers: dict | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {"Content-Length": str(len(data))}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


@pytest.fixture
def serve():
    servers = []

    def make(respond):
        s = _Server(respond)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_fetch_parses_what_the_endpoint_serves(serve):
    s = serve(lambda h: _send(h, 200, body()))
    prof = asyncio.run(pprof.fetch_profile(s.url, seconds=1, timeout=5))
    assert prof.total_samples == TOTAL_SAMPLES
    assert s.paths == ["/debug/pprof/profile?seconds=1"]
    assert {tag(x.tags, "source") for x in prof.stacks} == {s.url}


def test_http_error_carries_status_and_body(serve):
    s = serve(lambda h: _send(h, 500, b"Could not enable CPU profiling: cpu profiling already in use\n"))
    with pytest.raises(pprof.PprofError, match=r"HTTP 500 .*cpu profiling already in use"):
        asyncio.run(pprof.fetch_profile(s.url, seconds=1, timeout=5))


def test_oversized_announced_body_is_refused(serve):
    s = serve(lambda h: _send(h, 200, b"", {"Content-Length": str(64 << 20)}))
    with pytest.raises(pprof.PprofError, match="too large: the server announces"):
        asyncio.run(pprof.fetch_profile(s.url, seconds=1, timeout=5))


def test_stalling_endpoint_times_out_with_a_message():
    release = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    conns = []

    def accept():  # accept and never answer
        try:
            while not release.is_set():
                c, _ = listener.accept()
                conns.append(c)
        except OSError:
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(pprof.PprofError, match="timed out"):
            asyncio.run(pprof.fetch_profile(url, seconds=1, timeout=0.5))
    finally:
        release.set()
        listener.close()
        for c in conns:
            c.close()
        t.join(5)


def test_refused_connection_names_the_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(pprof.PprofError, match=f"cannot fetch http://127.0.0.1:{port}/debug/pprof/profile"):
        asyncio.run(pprof.fetch_profile(f"http://127.0.0.1:{port}", seconds=1, timeout=2))


def test_streamed_gunzip_equals_one_shot():
    g = pprof.GunzipCapped()
    data = body()
    for i in range(len(data)):
        g.feed(data[i : i + 1])
    assert g.finish() == zlib.decompress(data, 16 + zlib.MAX_WBITS)


# --- a live Go service ------------------------------------------------------------------


@pytest.fixture
def goservice(tmp_path):
    need(shutil.which("go") is not None, "needs a Go toolchain (apt-get install golang-go)")
    src = tmp_path / "src"
    shutil.copytree(DATA / "goservice", src)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GOCACHE": str(tmp_path / "cache"),
        "GOPATH": str(tmp_path / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GO111MODULE": "on",
        "GOPROXY": "off",
    }
    subprocess.run(
        ["go", "build", "-o", str(tmp_path / "goservice"), "."],
        cwd=src,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = subprocess.Popen([str(tmp_path / "goservice")], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://"), line
        yield line.split()[-1]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        # the module cache holds read-only files; make them removable for tmp_path cleanup
        subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=False)


def test_live_go_service_profile_carries_its_trace_ids(goservice):
    prof = asyncio.run(pprof.fetch_profile(goservice, seconds=2, timeout=10))
    assert prof.total_samples > 0
    assert prof.sample_types == (("samples", "count"), ("cpu", "nanoseconds"))
    # A sample may carry no labels (GC, the scheduler, the HTTP handler serving this very
    # profile); what is guaranteed is that a label, when present, is one the service set,
    # and that code running inside a request's pprof.Do carries that request's labels.
    assert {tag(s.tags, "trace_id") for s in prof.stacks} <= set(TRACE_IDS) | {None}
    request = {
        "main.hotCheckout": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        "main.hotSearch": ("a3ce929d0e0e47364bf92f3577b34da6", "b7ad6b7169203331"),
    }
    hot = [s for s in prof.stacks if set(request) & set(s.frames)]
    assert hot, "the two busy requests were never sampled"
    for s in hot:
        (fn,) = set(request) & set(s.frames)
        assert (tag(s.tags, "trace_id"), tag(s.tags, "span_id")) == request[fn], s
    inside_do = [s for s in prof.stacks if "main.request.func1" in s.frames]
    assert all(tag(s.tags, "trace_id") in TRACE_IDS for s in inside_do)
    names = {f.name for f in aggregate.top_functions(prof.stacks, 3)}
    assert names & {"main.hotCheckout", "main.hotSearch"}
