"""The metric families, built from the store when Prometheus scrapes (prometheus_client
calls `collect` on the server's thread): nothing runs between scrapes, and one lock
keeps two scrapers from counting the same snapshot twice.

Counters are counters only where the number never goes down while the agent runs: the
flow counters (flows.py derives them), the rules' and BPF programs' kernel counters,
the datapath's drop counters (these start again with their collector, which Prometheus
reads as a counter reset). Everything about the present (rates, peers, verdicts,
health) is a gauge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ebpftop.collectors.canary.data import CanaryData
from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.profiles.model import ProfilesData
from ebpftop.collectors.rules.model import RulesData
from ebpftop.collectors.selfcost.model import STATS_OFF, SelfCostData
from ebpftop.core.model import HealthState
from ebpftop.core.store import Store

from . import bounds
from .bounds import OTHER, label
from .flows import OWNER_LABELS, FlowCounters, top_peers

log = logging.getLogger(__name__)

# canary check -> its name with its unit, as the check label says it
CHECKS = {
    "p99": "p99_seconds",
    "error_ratio": "error_ratio",
    "p99_ratio": "p99_to_stable_ratio",
    "drift": "drift_cramers_v",
}


class RuntimeView(Protocol):
    """What the exporter reads of a core.runtime.Runtime."""

    @property
    def store(self) -> Store: ...

    def producers(self) -> frozenset[str]: ...


# the runtime, or a function that returns the one running now (the agent swaps its
# Runtime on a reload; None while it has none)
RuntimeSource = RuntimeView | Callable[[], RuntimeView | None]


def current(source: RuntimeSource) -> RuntimeView | None:
    return source() if callable(source) else source


def _version() -> str:
    try:
        return metadata.version("ebpftop")
    except metadata.PackageNotFoundError:
        return "unknown"


class Exporter(Collector):
    def __init__(self, runtime: RuntimeSource) -> None:
        self.source = runtime
        self._lock = threading.Lock()
        self._flows = FlowCounters(since=time.time())
        self._version = _version()
        self._failures: dict[str, int] = {}

    def describe(self) -> list[Metric]:
        return []  # unchecked names: registering must not run a scrape

    def collect(self) -> Iterator[Metric]:
        rt = current(self.source)
        with self._lock:
            # the flow counters are the exporter's: served even while no runtime runs
            parts: list[tuple[str, Callable[[], Iterator[Metric]]]] = [
                ("flows", lambda: self._flows_families(rt.store if rt is not None else None))
            ]
            if rt is not None:
                parts += [
                    ("health", lambda: self._health(rt)),
                    ("rules", lambda: self._rules(rt.store)),
                    ("canary", lambda: self._canary(rt.store)),
                    ("selfcost", lambda: self._selfcost(rt.store)),
                ]
            for name, part in parts:
                try:
                    families = list(part())  # a part that fails yields nothing, not half
                except Exception:
                    # one bad payload must not take the node's other metrics with it
                    log.exception("metrics: the %s part failed; left out of this scrape", name)
                    self._failures[name] = self._failures.get(name, 0) + 1
                    continue
                yield from families
            failures = CounterMetricFamily(
                "ebpftop_metrics_part_failures", "scrapes that left a part out: it failed", labels=["part"]
            )
            for name, n in sorted(self._failures.items()):
                failures.add_metric([name], n)
            yield failures
            info = GaugeMetricFamily("ebpftop_build_info", "ebpftop's version; always 1", labels=["version"])
            info.add_metric([label(self._version)], 1)
            yield info

    # --- health -----------------------------------------------------------------------

    def _health(self, rt: RuntimeView) -> Iterator[Metric]:
        store = rt.store
        sources = sorted(set(store.sources()) | set(rt.producers()))[: bounds.MAX_SOURCES]
        up = GaugeMetricFamily(
            "ebpftop_source_up", "1 when the source delivers data (ok or degraded)", labels=["source"]
        )
        state = GaugeMetricFamily(
            "ebpftop_source_state",
            "1 for the source's health state, 0 for the others",
            labels=["source", "state"],
        )
        age = GaugeMetricFamily(
            "ebpftop_source_last_good_age_seconds",
            "seconds since the source last delivered good data (absent: never)",
            labels=["source"],
        )
        errors = GaugeMetricFamily(
            "ebpftop_source_consecutive_errors", "failures in a row of the source", labels=["source"]
        )
        now = time.time()
        for source in sources:
            health = store.health(source)
            name = label(source)
            # a source that has not sampled yet (compiling its BPF, a minute on a loaded node)
            # is starting, not down: a fleet view ranks down agents first
            now_state = "starting" if store.latest(source) is None else health.state.value
            up.add_metric([name], 1 if health.state in (HealthState.OK, HealthState.DEGRADED) else 0)
            for s in bounds.STATES:
                state.add_metric([name, s], 1 if now_state == s else 0)
            if (a := health.age(now)) is not None:
                age.add_metric([name], a)
            errors.add_metric([name], health.errors)
        yield from (up, state, age, errors)

    # --- flows ------------------------------------------------------------------------

    def _flows_families(self, store: Store | None) -> Iterator[Metric]:
        data = None
        if store is not None:
            newest = self._flows.update(store.history("flows"))
            latest = store.last_good("flows")
            data = latest.data if latest is not None and isinstance(latest.data, FlowsData) else newest
        labels = ["direction", "proto", *OWNER_LABELS]
        fam_bytes = CounterMetricFamily(
            "ebpftop_flow_bytes",
            "link-layer bytes of connections by direction, protocol and local owner",
            labels=labels,
        )
        fam_packets = CounterMetricFamily(
            "ebpftop_flow_packets",
            "packets of connections by direction, protocol and local owner",
            labels=labels,
        )
        retrans = CounterMetricFamily(
            "ebpftop_tcp_retransmits", "TCP retransmits by local owner", labels=list(OWNER_LABELS)
        )
        fails = CounterMetricFamily(
            "ebpftop_tcp_connect_failures",
            "TCP connects that failed, by local owner",
            labels=list(OWNER_LABELS),
        )
        latency = HistogramMetricFamily(
            "ebpftop_tcp_connect_duration_seconds",
            "TCP connect latency (SYN to established) by local owner",
            labels=list(OWNER_LABELS),
        )
        for owner, c in sorted(self._flows.owners.items()):
            for direction, per_proto in (("receive", c.receive), ("transmit", c.transmit)):
                for proto, (nbytes, npackets) in sorted(per_proto.items()):
                    fam_bytes.add_metric([direction, proto, *owner], nbytes)
                    fam_packets.add_metric([direction, proto, *owner], npackets)
            retrans.add_metric(list(owner), c.retransmits)
            fails.add_metric(list(owner), c.connect_failures)
            cumulative, buckets = 0, []
            for le, n in zip(bounds.LATENCY_BUCKETS, c.buckets, strict=True):
                cumulative += n
                buckets.append((repr(le), cumulative))
            buckets.append(("+Inf", c.latency_count))
            latency.add_metric(list(owner), buckets, c.latency_sum)
        yield from (fam_bytes, fam_packets, retrans, fails, latency)
        if data is None:
            return
        yield from self._flow_gauges(data)

    def _flow_gauges(self, data: FlowsData) -> Iterator[Metric]:
        peers, (rest_bps, rest_n) = top_peers(data, bounds.MAX_PEERS)
        peer_bps = GaugeMetricFamily(
            "ebpftop_peer_bytes_per_second",
            f"bytes/s to and from the {bounds.MAX_PEERS} busiest remote addresses of the top connections; "
            'the rest summed as peer="other"',
            labels=["peer"],
        )
        peer_n = GaugeMetricFamily(
            "ebpftop_peer_connections", "top connections with each remote address", labels=["peer"]
        )
        for peer, bps, n in peers:
            peer_bps.add_metric([peer], bps)
            peer_n.add_metric([peer], n)
        if rest_n:
            peer_bps.add_metric([OTHER], rest_bps)
            peer_n.add_metric([OTHER], rest_n)
        yield from (peer_bps, peer_n)
        yield GaugeMetricFamily(
            "ebpftop_flows_tracked", "connections in the kernel's map", value=data.flows_tracked
        )
        if data.total_bps is not None:
            yield GaugeMetricFamily(
                "ebpftop_flows_bytes_per_second", "bytes/s over every connection", value=data.total_bps
            )
        if data.total_pps is not None:
            yield GaugeMetricFamily(
                "ebpftop_flows_packets_per_second", "packets/s over every connection", value=data.total_pps
            )
        for name, help_text, value in (
            ("ebpftop_flows_evictions", "connections pushed out of the full LRU map", data.evictions),
            (
                "ebpftop_flows_update_failures",
                "new connections the kernel could not insert",
                data.update_failures,
            ),
            ("ebpftop_flows_truncated_packets", "packets too short to parse", data.truncated_packets),
            ("ebpftop_tcp_events", "TCP events read from the ring buffer", data.events_total),
            ("ebpftop_tcp_events_lost", "TCP events lost: the ring buffer was full", data.lost_events),
        ):
            if value is not None:
                yield CounterMetricFamily(name, help_text, value=value)

    # --- rules ------------------------------------------------------------------------

    def _rules(self, store: Store) -> Iterator[Metric]:
        snap = store.last_good("rules")
        if snap is None or not isinstance(snap.data, RulesData):
            return
        data = snap.data
        labels = ["rule_id", "action", "comment"]
        packets = CounterMetricFamily("ebpftop_rule_packets", "packets a rule matched", labels=labels)
        nbytes = CounterMetricFamily("ebpftop_rule_bytes", "bytes a rule matched", labels=labels)
        shown = sorted(data.rules, key=lambda r: r.position)[: bounds.MAX_RULES]
        for r in shown:
            values = [str(r.id), label(r.action, 16), label(r.comment)]
            packets.add_metric(values, r.packets)
            nbytes.add_metric(values, r.bytes)
        yield from (packets, nbytes)
        yield GaugeMetricFamily("ebpftop_rules", "rules in the rule book", value=len(data.rules))
        yield GaugeMetricFamily(
            "ebpftop_rules_exported", f"rules with series (at most {bounds.MAX_RULES})", value=len(shown)
        )
        yield GaugeMetricFamily(
            "ebpftop_rules_enforcing",
            "allow/deny rules alive (they stay when ebpftop exits)",
            value=data.enforcing,
        )

    # --- canary -----------------------------------------------------------------------

    def _canary(self, store: Store) -> Iterator[Metric]:
        snap = store.last_good("canary")
        if snap is None or not isinstance(snap.data, CanaryData):
            return
        verdict = GaugeMetricFamily(
            "ebpftop_canary_verdict",
            "1 for the service's canary verdict, 0 for the others",
            labels=["service", "verdict"],
        )
        value = GaugeMetricFamily(
            "ebpftop_canary_check_value",
            "what a canary check measured (unit in the check's name)",
            labels=["service", "check"],
        )
        threshold = GaugeMetricFamily(
            "ebpftop_canary_check_threshold",
            "the limit a canary check holds its value to",
            labels=["service", "check"],
        )
        breaches = GaugeMetricFamily(
            "ebpftop_canary_check_breaches",
            "consecutive evaluations over the threshold",
            labels=["service", "check"],
        )
        for svc in snap.data.services[: bounds.MAX_CANARY_SERVICES]:
            name = label(svc.name)
            for v in bounds.VERDICTS:
                verdict.add_metric([name, v], 1 if svc.verdict.value == v else 0)
            for m in svc.metrics:
                check = CHECKS.get(m.name)
                if check is None:
                    continue
                if m.value is not None:
                    value.add_metric([name, check], m.value)
                if m.threshold is not None:
                    threshold.add_metric([name, check], m.threshold)
                breaches.add_metric([name, check], m.breaches)
        yield from (verdict, value, threshold, breaches)

    # --- ebpftop's own cost -----------------------------------------------------------

    def _selfcost(self, store: Store) -> Iterator[Metric]:
        prof = store.last_good("profiles")
        if prof is not None and isinstance(prof.data, ProfilesData):
            yield CounterMetricFamily(
                "ebpftop_profile_samples_lost",
                "CPU samples whose stack could not be recorded",
                value=prof.data.lost_samples,
            )
        snap = store.last_good("selfcost")
        if snap is None or not isinstance(snap.data, SelfCostData):
            return
        d = snap.data
        if d.cpu_percent is not None:
            yield GaugeMetricFamily(
                "ebpftop_agent_cpu_usage_ratio",
                "the agent's CPU (process and children), of one CPU, over the last interval",
                value=d.cpu_percent / 100.0,
            )
        yield GaugeMetricFamily(
            "ebpftop_agent_resident_memory_bytes", "the agent's RSS (process and children)", value=d.rss_bytes
        )
        yield GaugeMetricFamily("ebpftop_agent_threads", "the agent's threads", value=d.threads)
        yield GaugeMetricFamily("ebpftop_agent_children", "the agent's child processes", value=d.children)
        yield GaugeMetricFamily(
            "ebpftop_bpf_stats_enabled",
            "1 while the kernel counts BPF run time (the program counters only grow then)",
            value=0 if d.stats.state == STATS_OFF else 1,
        )
        labels = ["part", "program", "type", "id"]
        runs = CounterMetricFamily(
            "ebpftop_bpf_program_runs", "runs of ebpftop's BPF programs", labels=labels
        )
        run_time = CounterMetricFamily(
            "ebpftop_bpf_program_run_seconds",
            "time ebpftop's BPF programs ran; per packet for TC: rate(this) / rate(runs)",
            labels=labels,
        )
        for p in sorted(d.programs, key=lambda p: p.run_time_ns, reverse=True)[: bounds.MAX_PROGRAMS]:
            values = [label(p.owner or ""), label(p.name, 16), label(p.type, 32), str(p.id)]
            runs.add_metric(values, p.run_cnt)
            run_time.add_metric(values, p.run_time_ns / 1e9)
        yield from (runs, run_time)
