"""How many series one node exports at most, part by part, and the label rules that
keep it so: every label value comes from a bounded set or is cut to a bounded length.
`MAX_SERIES` is what tests/test_metrics.py holds a 10k-flow scrape to."""

from __future__ import annotations

from ebpftop.core.untrusted import clean

OTHER = "other"  # the label value that sums what a bound leaves out

MAX_SOURCES = 16  # sources with health series (the agent runs about 7)
MAX_OWNERS = 20  # local owners with their own flow series; later ones count as OTHER
OWNER_IDLE_S = 600.0  # an owner this long without traffic gives its slot to a new one
MAX_TRACKED_FLOWS = 50_000  # connections whose last counts are kept to take deltas
MAX_PEERS = 20  # remote peers with their own series; the rest are summed into OTHER
MAX_RULES = 64  # rules exported, highest priority first
MAX_CANARY_SERVICES = 16
MAX_PROGRAMS = 32  # ebpftop's BPF programs with cost series
PROTOS = ("tcp", "udp", "icmp", "icmp6", "sctp")  # any other protocol is OTHER
DIRECTIONS = ("receive", "transmit")
# connect latency buckets, seconds (loopback and LAN to a slow remote)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CANARY_CHECKS = 4  # p99, error_ratio, p99_ratio, drift
VERDICTS = ("pass", "warn", "fail", "no_data")
STATES = ("ok", "degraded", "down", "off", "starting")  # starting: no sample yet (BPF compiling)

LABEL_LEN = 64  # characters of a free-text label value (rule comment, owner name)

_owner_slots = MAX_OWNERS + 1  # + OTHER
MAX_SERIES = (
    MAX_SOURCES * (3 + len(STATES))  # up, last good age, errors, state
    + len(DIRECTIONS) * (len(PROTOS) + 1) * _owner_slots * 2  # bytes, packets
    + _owner_slots * 2  # retransmits, connect failures
    + _owner_slots * (len(LATENCY_BUCKETS) + 3)  # histogram: buckets, +Inf, _sum, _count
    + (MAX_PEERS + 1) * 2  # peer bytes/s, connections
    + 12  # flow totals and the datapath's counters
    + MAX_RULES * 2
    + 3  # rules: count, enforcing, exported
    + MAX_CANARY_SERVICES * (len(VERDICTS) + CANARY_CHECKS * 3)
    + MAX_PROGRAMS * 2
    + 8  # the agent's CPU, memory, threads, children, BPF stats, profile losses
    + 12  # prometheus_client's process collector (the agent's own CPU seconds, memory, fds)
    + 5  # parts that failed a scrape
    + 1  # build info
)


def label(value: object, max_len: int = LABEL_LEN) -> str:
    """A label value from an untrusted string: control characters made visible (a
    dashboard draws label values as they are) and at most `max_len` characters.
    Prometheus' own escaping then handles quotes and backslashes."""
    text = clean("" if value is None else value, max_len)
    # escapes lengthen what was cut to max_len: cut again
    return text if len(text) <= max_len else text[: max_len - 1] + "…"
