"""ebpftop's own cost in one piece, for the own-cost screen and `snapshot --json`:
the selfcost payload plus what the other sources could not count (losses), read from
their own payloads so every figure has one origin."""

from __future__ import annotations

from dataclasses import dataclass

from ebpftop.core.model import Snapshot

from ..flows.model import FlowsData
from ..profiles.model import ProfilesData
from .model import SelfCostData


@dataclass(frozen=True)
class Loss:
    source: str
    what: str
    count: int | None  # since the source started; None: not reported (source off, no tracepoints)


@dataclass(frozen=True)
class OwnCost:
    process: SelfCostData | None  # None: the selfcost source has not reported
    losses: tuple[Loss, ...]


def losses(flows: object, profiles: object) -> tuple[Loss, ...]:
    """Counters of what the datapaths dropped on the floor; payloads of another shape
    (a recording without types) count as not reported."""
    f = flows if isinstance(flows, FlowsData) else None
    p = profiles if isinstance(profiles, ProfilesData) else None
    return (
        Loss("flows", "flows evicted (map full)", f.evictions if f else None),
        Loss("flows", "flows not inserted", f.update_failures if f else None),
        Loss("flows", "TCP events lost (ring buffer full)", f.lost_events if f else None),
        Loss("profiles", "CPU samples lost", p.lost_samples if p and p.hz is not None else None),
    )


def own_cost(selfcost: Snapshot | None, flows: Snapshot | None, profiles: Snapshot | None) -> OwnCost:
    data = selfcost.data if selfcost is not None else None
    return OwnCost(
        process=data if isinstance(data, SelfCostData) else None,
        losses=losses(
            flows.data if flows is not None else None, profiles.data if profiles is not None else None
        ),
    )
