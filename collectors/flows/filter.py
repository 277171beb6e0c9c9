"""The flows filter language: what `/` in the flows pane accepts.

Terms are separated by spaces. Terms on different fields must all match (AND);
several terms on the same field match if any does (OR): `port:80 port:443 proto:tcp`
is "TCP on port 80 or 443". A leading `!` negates a term.

    port:443  sport:53  dport:8000-8100   either / source / destination port (or range)
    proto:udp  proto:47                   protocol name or number
    10.0.0.0/8  192.0.2.7  2001:db8::/32   either address in the network
    src:10.0.0.0/8  dst:192.0.2.1          source / destination address
    proc:nginx  pid:1234  svc:checkout     process name (substring), pid, service (substring)
    iface:eth0  dir:ingress|egress        an interface it was seen on / the direction where first seen
    pod:web  ns:shop  workload:checkout   what either end's process runs in (substring): Kubernetes
    unit:nginx  container:3f2a  netns:lab pod (name or UID), namespace, workload; systemd unit,
                                          container (id or name), network namespace

The identity terms (pod: ns: workload: unit: container: netns:) read the owners'
identities through the lookup given to `Filter.apply` (`FlowsData.identity`); a flow
matches when either end's process does (its own, or its peer's when that end is a
socket on this node too).

A bad term raises FilterError naming the term and its position; the caller keeps the
previous filter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ebpftop.collectors.identity.model import Identity

from .layout import PROTO_NAMES, PROTO_NUMBERS
from .model import FlowRecord
from .view import Lookup, no_identity

IDENTITY_FIELDS = ("pod", "ns", "workload", "unit", "container", "netns")
FIELDS = (
    "port",
    "sport",
    "dport",
    "proto",
    "addr",
    "src",
    "dst",
    "proc",
    "pid",
    "svc",
    "iface",
    "dir",
    *IDENTITY_FIELDS,
)
_ALIASES = {
    "namespace": "ns",
    "service": "svc",
    "process": "proc",
    "comm": "proc",
    "net": "addr",
    "ip": "addr",
    "direction": "dir",
}


class FilterError(ValueError):
    def __init__(self, message: str, term: str, position: int) -> None:
        super().__init__(f"at {position + 1} ({term!r}): {message}")
        self.message = message
        self.term = term
        self.position = position  # 0-based character offset of the term in the text


Predicate = Callable[[FlowRecord, Lookup], bool]


@dataclass(frozen=True)
class Term:
    field: str
    negate: bool
    text: str
    test: Predicate


@dataclass(frozen=True)
class Filter:
    text: str
    terms: tuple[Term, ...]

    def __call__(self, flow: FlowRecord, identity: Lookup = no_identity) -> bool:
        groups: dict[str, list[Term]] = {}
        for t in self.terms:
            groups.setdefault(t.field, []).append(t)
        for terms in groups.values():
            positive = [t for t in terms if not t.negate]
            if positive and not any(t.test(flow, identity) for t in positive):
                return False
            if any(t.test(flow, identity) for t in terms if t.negate):
                return False
        return True

    def apply(self, flows: Iterable[FlowRecord], identity: Lookup = no_identity) -> tuple[FlowRecord, ...]:
        """The flows that match; `identity` names their owners (pod:, unit:... terms)."""
        return tuple(f for f in flows if self(f, identity))

    @property
    def empty(self) -> bool:
        return not self.terms


def _port_range(value: str) -> tuple[int, int]:
    lo, sep, hi = value.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise ValueError(f"{value!r} is not a port or port range (e.g. 443 or 8000-8100)") from None
    if not (0 <= a <= 65535 and 0 <= b <= 65535):
        raise ValueError(f"port {value!r} is outside 0-65535")
    if a > b:
        raise ValueError(f"port range {value!r} runs backwards")
    return a, b


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or network (e.g. 10.0.0.0/8, 2001:db8::/32)") from None


def _in(net: ipaddress.IPv4Network | ipaddress.IPv6Network, a: str) -> bool:
    try:
        return ipaddress.ip_address(a) in net
    except ValueError:
        return False


def _build(field: str, value: str) -> Predicate:
    if not value:
        raise ValueError(f"{field}: needs a value")
    if field in ("port", "sport", "dport"):
        lo, hi = _port_range(value)
        if field == "sport":
            return lambda f, _i: lo <= f.sport <= hi
        if field == "dport":
            return lambda f, _i: lo <= f.dport <= hi
        return lambda f, _i: lo <= f.sport <= hi or lo <= f.dport <= hi
    if field == "proto":
        v = value.lower()
        if v.isdigit():
            num = int(v)
            if num > 255:
                raise ValueError(f"protocol number {v} is above 255")
            name = PROTO_NAMES.get(num, str(num))
        elif v in PROTO_NUMBERS:
            name = v
        else:
            raise ValueError(
                f"unknown protocol {value!r} (known: {', '.join(sorted(PROTO_NUMBERS))} or a number)"
            )
        return lambda f, _i: f.proto == name
    if field in ("addr", "src", "dst"):
        net = _network(value)
        if field == "src":
            return lambda f, _i: _in(net, f.src)
        if field == "dst":
            return lambda f, _i: _in(net, f.dst)
        return lambda f, _i: _in(net, f.src) or _in(net, f.dst)
    if field == "proc":
        v = value.lower()
        return lambda f, _i: f.comm is not None and v in f.comm.lower()
    if field == "svc":
        v = value.lower()
        return lambda f, _i: f.service is not None and v in f.service.lower()
    if field == "pid":
        if not value.isdigit():
            raise ValueError(f"pid must be a number, not {value!r}")
        pid = int(value)
        return lambda f, _i: f.pid == pid
    if field == "iface":  # any interface the connection was seen on
        return lambda f, _i: f.iface == value or any(p.iface == value for p in f.paths)
    if field == "dir":
        v = {"in": "ingress", "out": "egress"}.get(value.lower(), value.lower())
        if v not in ("ingress", "egress"):
            raise ValueError(f"direction must be ingress or egress, not {value!r}")
        return lambda f, _i: f.direction == v
    if field in IDENTITY_FIELDS:
        return _identity_term(field, value.lower())
    raise AssertionError(field)


def _identity_texts(who: Identity, field: str) -> tuple[str | None, ...]:
    """The values an identity term looks in."""
    if field == "pod":
        return (who.pod, f"{who.namespace}/{who.pod}" if who.pod and who.namespace else None, who.pod_uid)
    if field == "ns":
        return (who.namespace,)
    if field == "workload":
        return (who.workload,)
    if field == "unit":
        return (who.unit,)
    if field == "container":
        return (who.container, who.container_name)
    return (who.netns,)  # netns: None is the host's own, matched by no name


def _identity_term(field: str, v: str) -> Predicate:
    def test(f: FlowRecord, identity: Lookup) -> bool:
        for pid in (f.pid, f.peer_pid):
            if pid is None:
                continue
            who = identity(pid)
            if who is not None and any(t is not None and v in t.lower() for t in _identity_texts(who, field)):
                return True
        return False

    return test


def parse(text: str) -> Filter:
    """Parse a filter; raises FilterError pointing at the first bad term."""
    terms: list[Term] = []
    pos = 0
    for raw in text.split():
        at = text.index(raw, pos)
        pos = at + len(raw)
        negate = raw.startswith("!")
        body = raw[1:] if negate else raw
        field, sep, value = body.partition(":")
        if sep and not _looks_like_ipv6(body):
            field = _ALIASES.get(field.lower(), field.lower())
            if field not in FIELDS:
                raise FilterError(f"unknown field {field!r} (fields: {', '.join(FIELDS)})", raw, at)
        else:
            field, value = "addr", body
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise FilterError(
                    f"{body!r} is neither field:value nor an address (did you mean proc:{body}?)", raw, at
                ) from None
        try:
            test = _build(field, value)
        except ValueError as exc:
            raise FilterError(str(exc), raw, at) from None
        terms.append(Term(field, negate, raw, test))
    return Filter(text, tuple(terms))


def _looks_like_ipv6(s: str) -> bool:
    return s.count(":") >= 2
