"""Prometheus for the lab: configuration, command line, and the few API reads the lab needs.

It runs in the root namespace on 127.0.0.1 (the dashboard's URL) and scrapes the
services and HAProxy across the lab bridge every second, with exemplar storage on so
latency exemplars keep their trace_id.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from .web import answers, fetch

SERVICE_JOB = "lab-service"
HAPROXY_JOB = "haproxy"
NODE_JOB = "ebpftop"
"""The fleet nodes' agents (`lab up --nodes N`), one target each labelled `node`."""


def render_config(*, services: dict[str, str], haproxy: str, nodes: dict[str, str] | None = None) -> str:
    """`services` maps variant -> host:port, `nodes` node name -> host:port of its agent's
    /metrics. JSON is valid YAML, so no YAML writer is needed."""
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": SERVICE_JOB,
                # The metrics carry version/track themselves; `variant` names the target.
                "static_configs": [
                    {"targets": [addr], "labels": {"variant": variant}} for variant, addr in services.items()
                ],
            },
            {"job_name": HAPROXY_JOB, "static_configs": [{"targets": [haproxy]}]},
        ],
    }
    if nodes:
        cfg["scrape_configs"].append(
            {
                "job_name": NODE_JOB,
                "static_configs": [{"targets": [addr], "labels": {"node": n}} for n, addr in nodes.items()],
            }
        )
    return "# Written by `ebpftop lab`; removed by `ebpftop lab down`.\n" + json.dumps(cfg, indent=2) + "\n"


def command(binary: str, *, config_file: str, data_dir: str, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]


class PrometheusAPI:
    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The `data` of a Prometheus API answer: JSON from outside, shaped by `path`."""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, raw = fetch(url, timeout=self.timeout)
        try:
            body = json.loads(raw)
        except ValueError:
            raise OSError(f"{path}: HTTP {status}, not JSON") from None
        if body.get("status") != "success":
            raise OSError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def ready(self) -> bool:
        return answers(self.base_url + "/-/ready", self.timeout)

    def targets(self) -> list[dict[str, Any]]:
        """Active targets: job, scrape URL, health (up/down/unknown), lastError, labels."""
        return [
            {
                "job": t["labels"].get("job", ""),
                "url": t.get("scrapeUrl", ""),
                "health": t.get("health", ""),
                "error": t.get("lastError", ""),
                "labels": t.get("labels", {}),
            }
            for t in self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        ]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant vector query -> [{"metric": {...}, "value": float}]."""
        data = self._get("/api/v1/query", {"query": promql})
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get(
            "/api/v1/query_exemplars", {"query": promql, "start": start, "end": end}
        )
        return found
