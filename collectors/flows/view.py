"""Sorting, grouping and folding of connections for the pane (pure; no Textual).

Where most connections are short (one per request), the first screen would be a list
of ended ones. So the default view folds them: connections that have ended (their TCP
close seen, or no packet for `IDLE_AFTER` seconds) fold per owner (service, else
process name) + the two addresses + the server's port into one `FlowFold` row with a
count; live connections stay rows of their own. A fold's figures are its members' sums
(distinct connections: nothing is counted twice), its rate what they moved in the last
tick, so short connections that came and went within it still show their traffic.
`ordered` keeps ended rows (folds, a lone ended connection) to at most half of the
first screen while live rows remain, so the live busy connections stay on top.

Grouping by what a process runs in (pod, namespace, workload, unit, container, netns)
reads the owners' identities through a lookup (`FlowsData.identity`). A connection is
one row and lands in one group: its owner's (`pid`, this end's) value, else its peer's
(`peer_pid`, the other end's, when that is a socket here too), else "(no pod)" (and so on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ebpftop.collectors.identity.model import Identity

from .model import FlowRecord

Lookup = Callable[[int | None], Identity | None]  # pid -> its identity (FlowsData.identity)

IDLE_AFTER = 10.0  # seconds without a packet after which a connection counts as ended
ENDED_SHARE = 0.5  # of the first screen, at most this much goes to ended rows while live ones remain

# (key, label) in the order `s` cycles through them
SORTS = (
    ("bps", "bytes/s"),
    ("pps", "packets/s"),
    ("bytes", "total bytes"),
    ("retransmits", "retransmits"),
    ("connect_latency_ms", "connect latency"),
)
GROUPS = ("process", "service", "remote", "pod", "namespace", "workload", "unit", "container", "netns")
IDENTITY_GROUPS = GROUPS[3:]  # read from the owners' identities
HOST_NETNS = "(host)"  # the netns group of processes in ebpftop's own namespace


def identity_value(who: Identity, by: str) -> str | None:
    """What `who` has for an identity group key (None: nothing). A pod without the
    Kubernetes API is its UID; a process in the host's namespace has netns "(host)"."""
    if by == "pod":
        if who.pod:
            return f"{who.namespace}/{who.pod}" if who.namespace else who.pod
        return f"pod {who.pod_uid}" if who.pod_uid else None
    if by == "namespace":
        return who.namespace
    if by == "workload":
        return who.workload
    if by == "unit":
        return who.unit
    if by == "container":
        return f"{who.runtime or 'container'} {who.container[:12]}" if who.container else None
    if by == "netns":
        return who.netns or HOST_NETNS
    raise ValueError(f"cannot group by {by!r} (choose {', '.join(GROUPS)})")


def no_identity(_pid: int | None) -> Identity | None:
    """The lookup when owners are not known (nobody is)."""
    return None


def available_groups(owners: Iterable[Identity]) -> tuple[str, ...]:
    """The group keys worth offering: the identity ones only when some owner has a value
    (no Kubernetes API: no pod names, namespaces or workloads to group by)."""
    owners = list(owners)
    keep = [
        by for by in IDENTITY_GROUPS if any(identity_value(o, by) not in (None, HOST_NETNS) for o in owners)
    ]
    return (*GROUPS[:3], *keep)


def next_sort(current: str) -> str:
    keys = [k for k, _ in SORTS]
    return keys[(keys.index(current) + 1) % len(keys)] if current in keys else keys[0]


def sort_flows(flows: Iterable[FlowRecord], key: str) -> list[FlowRecord]:
    """Largest first; unknown values (None) last; ties by total bytes, then stable."""
    if key not in {k for k, _ in SORTS}:
        raise ValueError(f"cannot sort by {key!r}")

    def k(f: FlowRecord) -> tuple[bool, Any, int]:
        v = getattr(f, key)
        return (v is not None, v if v is not None else 0, f.bytes)

    return sorted(flows, key=k, reverse=True)


@dataclass(frozen=True)
class FlowGroup:
    key: str
    flows: int
    packets: int
    bytes: int
    bps: float | None
    pps: float | None
    retransmits: int


def group_key(f: FlowRecord, by: str, identity: Lookup = no_identity) -> str:
    """The one group a connection counts in (see the module's docstring)."""
    if by in IDENTITY_GROUPS:
        mine, theirs = identity(f.pid), identity(f.peer_pid)
        if mine is None and theirs is None:
            return "(unknown process)"
        for who in (mine, theirs):
            value = identity_value(who, by) if who is not None else None
            if value is not None:
                return value
        return f"(no {by})"
    if by == "process":
        if f.pid is None:
            return "(unknown process)"
        return f"{f.comm or '?'} [{f.pid}]"
    if by == "service":
        return f.service or "(no service)"
    if by == "remote":
        return f.local_remote()[2]
    raise ValueError(f"cannot group by {by!r} (choose {', '.join(GROUPS)})")


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def group_flows(flows: Iterable[FlowRecord], by: str, identity: Lookup = no_identity) -> list[FlowGroup]:
    """One row per process / service / remote address / pod..., largest rate first."""
    acc: dict[str, FlowGroup] = {}
    for f in flows:
        k = group_key(f, by, identity)
        g = acc.get(k) or FlowGroup(k, 0, 0, 0, None, None, 0)
        acc[k] = FlowGroup(
            k,
            g.flows + 1,
            g.packets + f.packets,
            g.bytes + f.bytes,
            _add(g.bps, f.bps),
            _add(g.pps, f.pps),
            g.retransmits + f.retransmits,
        )
    groups = list(acc.values())
    return sorted(groups, key=lambda g: (g.bps is not None, g.bps or 0, g.bytes), reverse=True)


# --- ended connections, folded --------------------------------------------------------

FoldKey = tuple[str, str, str, str, int]  # proto, owner, src, dst, dport


def ended(f: FlowRecord, now: float) -> bool:
    """Its TCP close was seen, or it has been quiet for IDLE_AFTER seconds."""
    return f.closed or now - f.last_seen >= IDLE_AFTER


def owner(f: FlowRecord) -> str:
    """Who a connection belongs to, for folding: its service, else its process name."""
    if f.service:
        return f.service
    if f.comm:
        return f.comm
    return "(unknown)" if f.pid is None else f"pid {f.pid}"


def fold_key(f: FlowRecord) -> FoldKey:
    return (f.proto, owner(f), f.src, f.dst, f.dport)


@dataclass(frozen=True)
class FlowFold:
    """Ended connections of one owner between the same two addresses to one port."""

    key: FoldKey
    members: tuple[FlowRecord, ...]
    packets: int
    bytes: int
    bps: float | None
    pps: float | None
    retransmits: int
    connect_latency_ms: float | None  # the slowest connect among them
    first_seen: float
    last_seen: float

    @property
    def proto(self) -> str:
        return self.key[0]

    @property
    def src(self) -> str:
        return self.key[2]

    @property
    def dst(self) -> str:
        return self.key[3]

    @property
    def dport(self) -> int:
        return self.key[4]

    @property
    def connections(self) -> int:
        return len(self.members)

    @property
    def owner(self) -> str:
        return self.key[1]

    def common(self, name: str) -> Any:
        """A field every member shares (pid, comm, service, iface), else None."""
        values = {getattr(f, name) for f in self.members}
        return next(iter(values)) if len(values) == 1 else None


FlowRow = FlowRecord | FlowFold


def fold(members: Sequence[FlowRecord]) -> FlowFold:
    latency = [f.connect_latency_ms for f in members if f.connect_latency_ms is not None]
    return FlowFold(
        fold_key(members[0]),
        tuple(members),
        sum(f.packets for f in members),
        sum(f.bytes for f in members),
        sum_known(f.bps for f in members),
        sum_known(f.pps for f in members),
        sum(f.retransmits for f in members),
        max(latency) if latency else None,
        min(f.first_seen for f in members),
        max(f.last_seen for f in members),
    )


def sum_known(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None when none is known (never a made-up 0)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def fold_ended(flows: Iterable[FlowRecord], now: float) -> list[FlowRow]:
    """Live connections as they are; ended ones folded per `fold_key` (one alone stays
    itself). One pass."""
    rows: list[FlowRow] = []
    folds: dict[FoldKey, list[FlowRecord]] = {}
    for f in flows:
        if ended(f, now):
            folds.setdefault(fold_key(f), []).append(f)
        else:
            rows.append(f)
    rows += (m[0] if len(m) == 1 else fold(m) for m in folds.values())
    return rows


def row_ended(r: FlowRow, now: float) -> bool:
    return isinstance(r, FlowFold) or ended(r, now)


def ordered(rows: Iterable[FlowRow], key: str, now: float, window: int) -> list[FlowRow]:
    """Largest first by `key` (unknown last; ties: live before ended, then total
    bytes), with at most ENDED_SHARE of the first `window` rows ended while live rows
    remain to take their place: the rest of the ended rows follow those."""
    if key not in {k for k, _ in SORTS}:
        raise ValueError(f"cannot sort by {key!r}")
    rows = list(rows)
    done = {id(r): row_ended(r, now) for r in rows}

    def k(r: FlowRow) -> tuple[bool, Any, bool, int]:
        v = getattr(r, key)
        return (v is not None, v if v is not None else 0, not done[id(r)], r.bytes)

    quota = int(window * ENDED_SHARE)
    head: list[FlowRow] = []
    held: list[FlowRow] = []
    tail: list[FlowRow] = []
    taken = 0
    it = iter(sorted(rows, key=k, reverse=True))
    for r in it:
        if len(head) >= window:
            tail = [r, *it]
            break
        if done[id(r)]:
            if taken >= quota:
                held.append(r)
                continue
            taken += 1
        head.append(r)
    else:  # the live rows ran out inside the window: the held ended rows fill it
        room = window - len(head)
        head += held[:room]
        held = held[room:]
    return head + held + tail
