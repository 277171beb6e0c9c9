"""FleetCollector: the fleet's columns from Prometheus, through the canary's client.

One tick runs the queries of queries.py at once (each bounded by the client's
deadline). The agents' query decides whether there is a fleet at all: when it fails
the source is down with Prometheus' own words; any other query that fails leaves its
column empty (None) for this tick and is named in `failed`, so one slow recording rule
does not blank the view.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ebpftop.core.collector import Collector, SourceUnavailable
from ebpftop.core.untrusted import clean

from ..canary.collector import public_url, read_secret
from ..canary.query import Answer, PromClient, QueryError
from .filter import FilterError, FleetFilter, parse
from .model import FleetData, FleetNode
from .queries import node_key, queries
from .rank import medians, rank

HINT_NONE = (
    "run `ebpftop agent --metrics HOST:9464` on each node and have this Prometheus scrape it "
    "(deploy/kubernetes has a DaemonSet with scrape annotations)"
)
VALUE_COLUMNS = ("traffic", "retransmits", "connect_p99", "connect_failures", "rule_hits", "cpu", "rss")
FIELD = {
    "traffic": "traffic_bps",
    "retransmits": "retransmits_ps",
    "connect_p99": "connect_p99_s",
    "connect_failures": "connect_failures_ps",
    "rule_hits": "rule_hits_ps",
    "cpu": "cpu_ratio",
    "rss": "rss_bytes",
}


class FleetCollector(Collector):
    name = "fleet"

    def __init__(
        self, settings: Any, *, client: PromClient | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.settings = settings
        self._clock = clock  # the evaluation time; None: Prometheus' now
        self.interval = float(settings.fleet_interval)
        self.window = str(settings.fleet_window)
        self._client = client
        self._own_client = client is None
        try:
            self._filter = parse(settings.fleet_filter or "")
        except FilterError:  # settings checked it; a caller that did not gets no filter
            self._filter = FleetFilter()

    @property
    def filter(self) -> FleetFilter:
        return self._filter

    def set_filter(self, flt: FleetFilter) -> None:
        """The operator's filter, for the next tick (the payload says which one it obeyed)."""
        self._filter = flt

    async def start(self) -> None:
        s = self.settings
        if not s.fleet_url:
            raise SourceUnavailable(
                "no fleet Prometheus", "pass --fleet URL or set [fleet] prometheus_url", off=True
            )
        if self._client is None:
            token = (
                read_secret(s.fleet_token_file, "bearer token", "bearer_token_file", "fleet")
                if s.fleet_token_file
                else None
            )
            self._client = PromClient(
                s.fleet_url, timeout=s.fleet_timeout, token=token, ca_file=s.fleet_ca_file, workers=12
            )

    async def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    async def collect(self) -> FleetData:
        client = self._client
        assert client is not None, "collect before start"
        flt = self._filter
        qs = queries(self.window, flt)
        at = self._clock() if self._clock is not None else None
        answers = await asyncio.gather(*(client.query(q.promql, at) for q in qs), return_exceptions=True)
        by_column: dict[str, Answer] = {}
        failed: list[str] = []
        warnings: list[str] = []
        for q, got in zip(qs, answers, strict=True):
            if isinstance(got, asyncio.CancelledError):
                raise got
            if isinstance(got, QueryError):
                if q.column == "agents":
                    raise SourceUnavailable(
                        f"Prometheus {public_url(client.url)}: {clean(got.message, 200)}",
                        "check that Prometheus answers at that URL (curl URL/-/ready)",
                    )
                failed.append(f"{q.column}: {clean(got.message, 120)}")
                continue
            if isinstance(got, BaseException):
                raise got
            by_column[q.column] = got
            warnings += [clean(w, 200) for w in got.warnings]
        nodes = _nodes(by_column)
        return FleetData(
            url=public_url(client.url),
            window=self.window,
            filter=flt.text,
            nodes=rank(nodes),
            medians=tuple(sorted(medians(nodes).items())),
            failed=tuple(failed),
            warnings=tuple(dict.fromkeys(warnings))[:5],
        )

    def degraded_reason(self, payload: Any) -> str:
        if isinstance(payload, FleetData):
            if payload.failed:
                return f"{len(payload.failed)} of the fleet's queries failed: {payload.failed[0]}"
            if not payload.nodes:
                return f"no ebpftop agents in this Prometheus; {HINT_NONE}"
        return ""


def _nodes(by_column: dict[str, Answer]) -> list[FleetNode]:
    """One FleetNode per (name, instance) that any agent series names."""
    fields: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for sample in by_column["agents"].samples:
        fields[node_key(sample.labels)]["version"] = clean(sample.labels.get("version", ""), 40)
    for sample in by_column.get("up", Answer((), ())).samples:
        key = node_key(sample.labels)
        if key in fields and sample.value is not None:
            fields[key]["up"] = sample.value >= 1
    for column in VALUE_COLUMNS:
        for sample in by_column.get(column, Answer((), ())).samples:
            key = node_key(sample.labels)
            if key in fields:
                fields[key][FIELD[column]] = sample.value
    listed: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for column, label in (("canaries", "service"), ("sources_down", "source")):
        for sample in by_column.get(column, Answer((), ())).samples:
            key = node_key(sample.labels)
            if key in fields:
                listed[key][column].append(clean(sample.labels.get(label, "?"), 60))
    out = []
    for (name, instance), f in fields.items():
        down = listed[(name, instance)]
        out.append(
            FleetNode(
                name=clean(name, 80),
                instance=clean(instance, 80),
                up=f.get("up"),
                failing_canaries=tuple(sorted(set(down["canaries"]))),
                sources_down=tuple(sorted(set(down["sources_down"]))),
                **{k: v for k, v in f.items() if k != "up"},
            )
        )
    return out
