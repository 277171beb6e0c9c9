"""The fleet payload: one row per node whose agent Prometheus scrapes, ranked worst first.

A node is named by its `node` label when the scrape config gives one (the lab, a
DaemonSet's relabelling), else by `instance`. Every number that Prometheus did not
answer is None (no data), never zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ebpftop.core.alarms import Alarm, register_alarms
from ebpftop.core.model import Snapshot, register_payload


@dataclass(frozen=True)
class FleetNode:
    name: str
    instance: str  # the scrape target, host:port
    up: bool | None  # Prometheus' `up` of the target; None: no `up` series for it
    version: str = ""
    traffic_bps: float | None = None  # bytes/s of every connection, both directions
    retransmits_ps: float | None = None
    connect_p99_s: float | None = None
    connect_failures_ps: float | None = None
    rule_hits_ps: float | None = None  # packets/s matched by any rule
    failing_canaries: tuple[str, ...] = ()  # services whose canary verdict is fail
    sources_down: tuple[str, ...] = ()  # the agent's sources that deliver nothing
    cpu_ratio: float | None = None  # the agent's CPU, of one CPU
    rss_bytes: float | None = None
    score: float = 0.0  # the rank's key: higher is worse (rank.py)
    reasons: tuple[str, ...] = ()  # what is wrong, worst first; () for a node that looks fine

    @property
    def host(self) -> str:
        """The instance without its port (an IPv6 literal without brackets)."""
        host = self.instance.rpartition(":")[0] if ":" in self.instance else self.instance
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@dataclass(frozen=True)
class FleetData:
    url: str  # the Prometheus it came from (without credentials)
    window: str  # the rate window, e.g. "1m"
    filter: str  # the filter the flow columns obey, as typed ("" none)
    nodes: tuple[FleetNode, ...]  # worst first
    medians: tuple[tuple[str, float], ...] = ()  # per column, the fleet's median
    failed: tuple[str, ...] = ()  # columns whose query failed this time: "retransmits: timeout ..."
    warnings: tuple[str, ...] = ()  # Prometheus' own warnings


register_payload("fleet", FleetData)

MAX_ALARMS = 3


def fleet_alarms(latest: Snapshot, history: Sequence[Snapshot]) -> list[Alarm]:
    """The worst nodes, by name and why (an agent down or a failing canary is an error,
    an outlier a warning); at most MAX_ALARMS, so the header keeps room."""
    data = latest.data
    out: list[Alarm] = []
    for node in data.nodes if isinstance(data, FleetData) else ():
        if not node.reasons or len(out) >= MAX_ALARMS:
            break
        severe = node.up is False or bool(node.failing_canaries)
        out.append(
            Alarm(
                latest.source,
                "error" if severe else "warning",
                f"{node.name}: {node.reasons[0]}",
                "fleet_node",
                {"node": node.name, "instance": node.instance, "reasons": list(node.reasons)},
            )
        )
    return out


register_alarms("fleet", fleet_alarms)
