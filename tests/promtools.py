"""A real Prometheus for tests: own port on 127.0.0.1, own tmp data dir, stopped after.

    with prometheus(tmp_path, openmetrics=text) as prom:      # backfilled, exact data
        prom.url  # http://127.0.0.1:<port>

    with prometheus(tmp_path, scrape=["127.0.0.1:8000"]) as prom:  # live scrapes

Backfill goes through `promtool tsdb create-blocks-from openmetrics`, so the blocks
are exactly what a user's backfill would produce. Exemplar storage is on so the
exemplar API answers. Missing binaries skip the test locally and fail it in CI.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conftest import need

READY_WITHIN_S = 30.0


@dataclass
class Prom:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, promql: str, at: float | None = None) -> dict:
        """Raw /api/v1/query envelope, for tests that check the fixture itself."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_prometheus() -> None:
    need(
        shutil.which("prometheus") is not None, "prometheus binary not installed (apt-get install prometheus)"
    )
    need(shutil.which("promtool") is not None, "promtool not installed (apt-get install prometheus)")


def backfill(openmetrics: str, data_dir: Path, work: Path) -> None:
    """Write `openmetrics` (must end with `# EOF`) as TSDB blocks into `data_dir`."""
    src = work / "backfill.om"
    src.write_text(openmetrics)
    proc = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(src), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {proc.stdout}{proc.stderr}")


def _config(scrape: Sequence[str], scrape_interval: str) -> str:
    jobs = []
    for i, target in enumerate(scrape):
        jobs.append(
            f"  - job_name: t{i}\n"
            f"    scrape_interval: {scrape_interval}\n"
            f"    static_configs:\n"
            f"      - targets: [{json.dumps(target)}]\n"
        )
    return "global:\n  evaluation_interval: 1h\nscrape_configs:\n" + ("".join(jobs) if jobs else "  []\n")


def _wait_ready(prom: Prom) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if prom.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {prom.proc.returncode}:\n{prom.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                ready = resp.status == 200
            if ready:
                # the port was picked free, then bound by whoever came first: make sure
                # this is our prometheus, not another test's (other runs share the host)
                with urllib.request.urlopen(f"{prom.url}/api/v1/status/flags", timeout=2) as resp:
                    flags = json.loads(resp.read()).get("data", {})
                if flags.get("storage.tsdb.path") != str(prom.data_dir):
                    raise RuntimeError(
                        f"127.0.0.1:{prom.port} answers for another prometheus "
                        f"({flags.get('storage.tsdb.path')!r})"
                    )
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready within {READY_WITHIN_S}s:\n{prom.log()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def prometheus(
    tmp_path: Path,
    *,
    openmetrics: str | None = None,
    scrape: Sequence[str] = (),
    scrape_interval: str = "1s",
    extra_args: Sequence[str] = (),
) -> Iterator[Prom]:
    need_prometheus()
    work = Path(tmp_path) / f"prom-{time.monotonic_ns()}"
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    if openmetrics is not None:
        backfill(openmetrics, data_dir, work)
    cfg = work / "prometheus.yml"
    cfg.write_text(_config(scrape, scrape_interval))
    log_path = work / "prometheus.log"
    # A port picked free can be taken before prometheus binds it: try a few.
    last_error: Exception | None = None
    for _ in range(3):
        port = free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={data_dir}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=100y",
                    "--enable-feature=exemplar-storage",
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        prom = Prom(f"http://127.0.0.1:{port}", port, data_dir, proc, log_path)
        try:
            _wait_ready(prom)
        except RuntimeError as exc:
            _stop(proc)
            last_error = exc
            continue
        try:
            yield prom
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)
        return
    shutil.rmtree(work, ignore_errors=True)
    raise RuntimeError(f"could not start prometheus: {last_error}")


# --- building exact histograms -------------------------------------------------------


def openmetrics_histogram(
    name: str,
    series: dict[tuple[tuple[str, str], ...], dict[str, int]],
    *,
    start: int,
    step: int,
    steps: int,
) -> str:
    """Histogram samples growing by a fixed per-bucket count every `step` seconds.

    `series` maps a label tuple to *non-cumulative* counts per `le` (as strings, +Inf
    included); the bucket counters written are cumulative, as Prometheus expects.
    """
    lines = [f"# TYPE {name} histogram"]
    for labels, per_bucket in series.items():
        les = sorted(per_bucket, key=lambda le: float(le))
        base = ",".join(f'{k}="{v}"' for k, v in labels)
        for i in range(steps + 1):
            t = start + i * step
            cum = 0
            for le in les:
                cum += per_bucket[le] * i
                lines.append(f'{name}_bucket{{{base},le="{le}"}} {cum} {t}')
            lines.append(f"{name}_count{{{base}}} {cum} {t}")
            lines.append(f"{name}_sum{{{base}}} 0 {t}")
    return "\n".join(lines) + "\n"


def openmetrics_counter(
    name: str,
    series: dict[tuple[tuple[str, str], ...], int],
    *,
    start: int,
    step: int,
    steps: int,
) -> str:
    """A counter per label tuple growing by a fixed amount every `step` seconds."""
    lines = [f"# TYPE {name} counter"]
    for labels, inc in series.items():
        base = ",".join(f'{k}="{v}"' for k, v in labels)
        for i in range(steps + 1):
            lines.append(f"{name}_total{{{base}}} {inc * i} {start + i * step}")
    return "\n".join(lines) + "\n"
