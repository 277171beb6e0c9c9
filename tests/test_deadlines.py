"""A server that trickles its answer one byte every 0.1 s: every client in the product
gives up at its one total deadline (a per-read timeout never trips), and nothing that
exits — `snapshot`, the dashboard — waits for a request still stuck on it.

The bounds are generous (hang safety, not speed): each would be missed by minutes, or
forever, by a client with per-read timeouts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ebpftop.cli import doctor
from ebpftop.collectors.canary.collector import CanaryCollector
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.query import PromClient, QueryError
from ebpftop.collectors.canary.verdict import Thresholds
from ebpftop.collectors.deadline import DaemonExecutor
from ebpftop.collectors.profiles.pprof import PprofError, fetch
from ebpftop.collectors.rollout.argo import ArgoController
from ebpftop.collectors.rollout.base import ControllerError
from ebpftop.collectors.rollout.kube import KubeAccess
from ebpftop.collectors.rollout.runtime_api import RuntimeAPI, RuntimeAPIError
from ebpftop.collectors.rollout.webhook import WebhookController
from ebpftop.core.bus import Bus
from ebpftop.core.collector import CollectorRunner
from ebpftop.core.model import HealthState
from ebpftop.core.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
EBPFTOP = str(ROOT / ".venv" / "bin" / "ebpftop")
STEP = 0.1  # seconds between two bytes
ENDLESS = 10**6  # bytes: at one per STEP, longer than any test runs

# What the trickler sends, one byte at a time, after reading the request.
HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * ENDLESS  # the header block never ends
BODY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % ENDLESS
    + b" " * ENDLESS
)  # headers at once, then a body that never completes
TLS = b"\x16\x03\x03\x40\x00" + b"\x00" * ENDLESS  # a TLS record header, then its 16 kB slowly
RAW = b"x" * ENDLESS


class Trickler:
    """A real TCP server on 127.0.0.1 writing `payload` one byte every STEP."""

    def __init__(self, payload: bytes, *, fast_prefix: int = 0) -> None:
        self.payload = payload
        self.fast_prefix = fast_prefix  # bytes sent at once before the trickle
        self.stop = threading.Event()
        self.connections = 0
        self.active = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self.active += 1
        try:
            conn.settimeout(2)
            with contextlib.suppress(TimeoutError):
                conn.recv(65536)  # the request (or a TLS ClientHello)
            if self.fast_prefix:
                conn.sendall(self.payload[: self.fast_prefix])
            for i in range(self.fast_prefix, len(self.payload)):
                if self.stop.wait(STEP):
                    break
                conn.sendall(self.payload[i : i + 1])
        except OSError:
            pass  # the client hung up: what the deadline is for
        finally:
            conn.close()
            with self._lock:
                self.active -= 1

    def wait_active(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.active:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def trickler(request):
    servers = []

    def make(payload: bytes, **kw) -> Trickler:
        s = Trickler(payload, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def in_thread(fn, limit: float):
    """Run `fn` in a daemon thread: (its result or exception, seconds), or fail the test
    when it is still running after `limit` seconds."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["value"] = exc

    started = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still blocked after {limit:g} s"
    return out["value"], time.monotonic() - started


# --- each client gives up at its deadline -----------------------------------------------


@pytest.mark.parametrize(
    "payload,scheme",
    [(HEADERS, "http"), (BODY, "http"), (TLS, "https")],
    ids=["headers", "body", "tls-handshake"],
)
def test_a_prometheus_call_ends_at_its_deadline_whatever_phase_trickles(trickler, payload, scheme):
    server = trickler(payload)
    client = PromClient(f"{scheme}://127.0.0.1:{server.port}", timeout=1.0)
    try:
        err, _ = in_thread(lambda: client.get("query", {"query": "up"}), 10)
    finally:
        client.close()
    assert server.connections >= 1
    assert isinstance(err, QueryError), err
    assert err.kind == "timeout" and "within 1 s" in err.message


def test_closing_the_prometheus_client_frees_a_call_stuck_in_flight(trickler):
    server = trickler(BODY)
    client = PromClient(server.url, timeout=120.0)  # the deadline is far: only close can free it
    box: dict = {}

    def call():
        try:
            client.get("query", {"query": "up"})
        except QueryError as exc:
            box["err"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    assert server.wait_active(10)
    time.sleep(0.3)  # well into the trickled body
    client.close()
    t.join(10)
    assert not t.is_alive(), "close() left the call blocked"
    assert box["err"].kind == "timeout"


async def test_the_canary_source_reports_down_at_its_timeout(trickler):
    server = trickler(BODY)
    timeout = 3.0
    svc = ServiceConfig(
        name="shop", variant_label="version", thresholds=Thresholds(persist=1, min_requests=0)
    )
    settings = Settings(prometheus_url=server.url, canary_timeout=timeout, canary_interval=1.0)
    bus = Bus()
    seen = []
    bus.subscribe(seen.append)
    runner = CollectorRunner(CanaryCollector(settings, services=[svc]), bus)
    started = time.monotonic()
    task = asyncio.create_task(runner.run())
    try:
        while not seen and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen, "no report within 30 s"
    health = seen[0].health
    assert health.state is HealthState.DOWN
    assert f"within {timeout:g} s" in health.message
    # a per-read timeout plus the outer guard reported at 2 x timeout + 1 = 7 s
    assert took < timeout + 3.0, f"reported after {took:.1f} s"


async def test_a_trickling_pprof_endpoint_times_out_at_seconds_plus_timeout(trickler):
    server = trickler(BODY)
    started = time.monotonic()
    with pytest.raises(PprofError, match="timed out"):
        await asyncio.wait_for(fetch(server.url, seconds=1, timeout=1), 30)
    assert time.monotonic() - started < 2 + 3.0


async def test_a_trickling_webhook_receiver_times_out(trickler):
    server = trickler(BODY)
    c = WebhookController("checkout", server.url, secret_file=None, timeout=1.0)
    try:
        with pytest.raises(ControllerError, match="no answer within 1s"):
            await asyncio.wait_for(c.state(), 10)
    finally:
        await c.close()


async def test_a_trickling_kubernetes_api_times_out(trickler):
    server = trickler(HEADERS)
    access = KubeAccess(server=server.url, source="test kubeconfig")
    c = ArgoController("checkout", access, namespace="shop", name="checkout", timeout=1.0)
    try:
        with pytest.raises(ControllerError, match="within 1s"):
            await asyncio.wait_for(c.state(), 10)
    finally:
        await c.close()


def test_a_trickling_haproxy_runtime_api_times_out(trickler):
    server = trickler(RAW)
    api = RuntimeAPI(f"127.0.0.1:{server.port}", timeout=1.0)
    err, _ = in_thread(lambda: api.command("show info"), 10)
    assert isinstance(err, RuntimeAPIError), err
    assert "no answer within 1s" in str(err)


def test_doctor_gives_up_on_a_trickling_endpoint_at_its_timeout(trickler):
    server = trickler(BODY)
    check, _ = in_thread(
        lambda: doctor.check_endpoint(
            "prometheus", server.url, timeout=1.0, setting="[canary] prometheus_url"
        ),
        10,
    )
    assert check.ok is False, check
    assert "no complete answer within 1 s" in check.detail


def test_daemon_executor_runs_work_and_its_workers_never_hold_the_exit():
    pool = DaemonExecutor(1, "t")
    futures = [pool.submit(pow, 2, n) for n in range(5)]
    assert [f.result(5) for f in futures] == [1, 2, 4, 8, 16]
    started, release = threading.Event(), threading.Event()
    stuck = pool.submit(lambda: (started.set(), release.wait(60)))
    queued = [pool.submit(pow, 2, 2) for _ in range(3)]
    assert started.wait(5)
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t_"))
    pool.shutdown(wait=True)  # returns although its one worker is stuck
    assert not stuck.done() and all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)
    release.set()
    assert stuck.result(5)[1] is True


# --- nothing that exits waits on a stuck request ------------------------------------------


def clean_env(home: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_")}
    env["HOME"] = home  # no user config file changes what is tested
    return env


def test_snapshot_exits_soon_after_its_timeout_against_a_trickling_prometheus(trickler, tmp_path):
    server = trickler(BODY)
    proc = subprocess.Popen(
        [EBPFTOP, "--prometheus-url", server.url, "snapshot", "--source", "canary", "--duration", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(str(tmp_path)),
        cwd=tmp_path,
    )
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("snapshot still running after 60 s")
    took = time.monotonic() - started
    assert proc.returncode == 1, err
    assert "source canary failed" in err and "within 5 s" in err
    # 2 s of collection, the 5-s deadline, then out (it took 65 s, or as long as the trickle)
    assert took < 20, f"exited after {took:.1f} s"


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root"
)
def test_the_dashboard_quits_at_once_while_a_request_is_stuck(trickler):
    pytest.importorskip("pyte")
    sys.path.insert(0, str(ROOT / "bench"))
    from pty_app import PtyApp

    server = trickler(BODY)
    # The live dashboard, unprivileged (BPF sources just report down) so it attaches
    # nothing; the canary's deadline is far away, so only quitting can end its request.
    home = tempfile.mkdtemp(prefix="ebpftop-quit-")
    os.chmod(home, 0o777)
    config = pathlib.Path(home, "config.toml")
    config.write_text("")
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    argv = [
        *drop,
        sys.executable,
        "-c",
        "import sys; from ebpftop.cli.main import main; sys.exit(main())",
        "--config",
        str(config),
        "--prometheus-url",
        server.url,
        "--canary-timeout",
        "120",
        "--audit-log",
        f"{home}/audit.jsonl",
    ]
    app = PtyApp(argv, cols=120, rows=36, env={"HOME": home})
    try:
        assert app.wait_for(lambda s: "Quit" in s, 60) is not None, app.text()
        assert server.wait_active(30), "the canary never reached the trickler"
        app.pump(0.5)
        assert server.active, "the request ended before q"
        os.write(app.master, b"q")
        pressed = time.monotonic()
        while app.proc.poll() is None and time.monotonic() - pressed < 30:
            app.pump(0.05)
        took = time.monotonic() - pressed
        assert app.proc.poll() == 0, f"still running {took:.1f} s after q:\n{app.text()}"
        assert took < 5, f"q took {took:.1f} s"
    finally:
        app.close()
        shutil.rmtree(home, ignore_errors=True)
