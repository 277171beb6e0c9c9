"""The fleet's PromQL: one instant query per column, each answering one series per node.

Every query groups `by (node, instance)`: a scrape config that labels targets with
`node` names them so; without it, `instance` does. The agents are the targets that
exported `ebpftop_build_info` within SEEN (so a node whose agent died stays listed,
with `up` 0, instead of vanishing). Names and labels are those of cli/metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from .filter import FleetFilter

BY = "node, instance"
SEEN = "15m"


@dataclass(frozen=True)
class Query:
    column: str
    promql: str


def queries(window: str, flt: FleetFilter) -> tuple[Query, ...]:
    """The queries for a rate `window` (a Prometheus duration) under a filter."""
    owner = flt.matchers()
    svc = flt.inner(only=("service",))
    fail = '{verdict="fail"' + ("," + svc if svc else "") + "}"
    return (
        Query("agents", f"max by ({BY}, version) (max_over_time(ebpftop_build_info[{SEEN}]))"),
        Query("up", f"max by ({BY}) (up and on (instance) max_over_time(ebpftop_build_info[{SEEN}]))"),
        Query("traffic", f"sum by ({BY}) (rate(ebpftop_flow_bytes_total{owner}[{window}]))"),
        Query("retransmits", f"sum by ({BY}) (rate(ebpftop_tcp_retransmits_total{owner}[{window}]))"),
        Query(
            "connect_p99",
            f"histogram_quantile(0.99, sum by ({BY}, le) "
            f"(rate(ebpftop_tcp_connect_duration_seconds_bucket{owner}[{window}])))",
        ),
        Query(
            "connect_failures", f"sum by ({BY}) (rate(ebpftop_tcp_connect_failures_total{owner}[{window}]))"
        ),
        Query("rule_hits", f"sum by ({BY}) (rate(ebpftop_rule_packets_total[{window}]))"),
        Query(
            "canaries",
            f"max by ({BY}, service) (ebpftop_canary_verdict{fail}) == 1",
        ),
        # down, not "not up": a source the node does not configure (off) is not a fault
        Query("sources_down", f'max by ({BY}, source) (ebpftop_source_state{{state="down"}}) == 1'),
        Query("cpu", f"max by ({BY}) (ebpftop_agent_cpu_usage_ratio)"),
        Query("rss", f"max by ({BY}) (ebpftop_agent_resident_memory_bytes)"),
    )


def node_key(labels: dict[str, str]) -> tuple[str, str]:
    """(name, instance) of a series: its node label, else its instance."""
    instance = labels.get("instance", "")
    return labels.get("node") or instance, instance
