"""`r` in Flows: from what the table shows to a rule, in the rule editor.

The selected connection or group becomes a `count` rule that matches it (`rule_for`,
pure), shown in the Rules pane's editor with its preview against the recent flows;
Ctrl+T there makes it a deny with a TTL, Enter reviews and confirms it. A count goes
last (it changes nothing another rule decides), a deny or allow first (no rule already
there takes its packets before it); the confirmation says which. Applying goes
the way every rule change goes (`actions.rules_change.add`: the action path, the gate,
the audit log), and the Rules pane shows it being applied, then counting.

What a rule can match is packets (addresses, ports, interface, direction), not
processes, so the rule for a connection or group is the one for the packets that
arrive from its remote side:

- a connection the remote opened (first packet seen arriving): from the remote to this
  host's service port; one this host opened: from the remote's service port. On the
  interface it was seen on, arriving (`in`);
- a remote address (or a remote network: a group key that is a CIDR): everything from
  it, arriving, on its flows' interface when they share one;
- a port: arriving to it (this host serves it) or from it (the remotes serve it);
- a process, a service, anything else: what its connections have in common (one
  remote, else one service port: the one carrying most of its bytes, said in the note).

In a flow's detail, `r` is the rule for its remote: everything arriving from it.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget

from ebpftop.actions import rules_change
from ebpftop.collectors.flows.model import FlowRecord
from ebpftop.collectors.rules.grammar import parse_rule
from ebpftop.collectors.rules.spec import Rule
from ebpftop.core.model import Snapshot

from ...action_path import ActionRequest, Dialogs, Run, dashboard, through_gate
from ..rules.edit import RuleEditScreen, warm_while_editing
from ..rules.view import recent_flows
from .detail import DetailView, FlowDetailScreen

_RULE_PROTO = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmp6": "icmp"}
_PORTED = ("tcp", "udp")


@dataclass(frozen=True)
class Draft:
    text: str  # the rule text the editor opens with
    note: str  # where it came from and what it matches, for the editor's first line


def _proto(f: FlowRecord) -> str:
    return _RULE_PROTO.get(f.proto, "any")


def _served_here(f: FlowRecord) -> bool:
    """The remote opened it (its first packet was seen arriving): this host serves it."""
    return f.direction == "ingress"


def _remote(f: FlowRecord) -> tuple[str, int]:
    _l, _lp, remote, rport = f.local_remote()
    return remote, rport


def _local(f: FlowRecord) -> tuple[str, int]:
    local, lport, _r, _rp = f.local_remote()
    return local, lport


def _words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _one(values: Iterable[Any]) -> Any:
    """The value every item has, else None."""
    seen = set(values)
    return next(iter(seen)) if len(seen) == 1 else None


def _on(flows: Sequence[FlowRecord]) -> str:
    iface = _one(f.iface for f in flows)
    return f"on {iface}" if iface else ""


def _connection(f: FlowRecord) -> Draft:
    proto = _proto(f)
    remote, rport = _remote(f)
    local, lport = _local(f)
    ported = proto in _PORTED
    if _served_here(f):
        match = _words("from", remote, "to", local, f"port {lport}" if ported else "")
        what = f"packets from {remote} to this host's {proto} port {lport}" if ported else f"from {remote}"
    else:
        match = _words("from", remote, f"port {rport}" if ported else "", "to", local)
        what = f"packets from {remote}'s {proto} port {rport} to this host" if ported else f"from {remote}"
    text = _words("count", proto if proto != "any" else "", match, f"on {f.iface}", "in")
    return Draft(text, f"From the connection {f.src}:{f.sport} -> {f.dst}:{f.dport}: {what}, arriving.")


def _network(key: str) -> str | None:
    """The group key as an address or a network ('203.0.113.0/24'), else None."""
    try:
        net = ipaddress.ip_network(key.strip(), strict=False)
    except ValueError:
        return None
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _port_of(key: str) -> tuple[str, int] | None:
    """A port group's key ('443', 'tcp/443', 'tcp 443', ':443') as (proto or '', port)."""
    words = key.replace("/", " ").replace(":", " ").split()
    digits = [w for w in words if w.isdigit()]
    if len(digits) != 1 or not 1 <= int(digits[0]) <= 65535:
        return None
    proto = next((_RULE_PROTO[w] for w in words if w in _PORTED), "")
    return proto, int(digits[0])


def _for_remote(net: str, flows: Sequence[FlowRecord], label: str) -> Draft:
    on = _on(flows)
    text = _words("count from", net, on, "in")
    where = f" {on}" if on else " on every interface the rules program is attached to"
    return Draft(text, f"From {label}: every packet from {net} arriving{where}.")


def _for_port(proto: str, port: int, flows: Sequence[FlowRecord], label: str) -> Draft:
    served = [f for f in flows if _local(f)[1] == port]
    protos = {_proto(f) for f in flows} & set(_PORTED)
    proto = proto or (next(iter(protos)) if len(protos) == 1 else "tcp")
    on = _on(flows)
    if served or not flows:
        text = _words("count", proto, "to any port", str(port), on, "in")
        what = f"every {proto} packet arriving to this host's port {port}"
    else:
        text = _words("count", proto, "from any port", str(port), on, "in")
        what = f"every {proto} packet arriving from remote port {port}"
    return Draft(text, f"From {label}: {what}.")


def _common(flows: Sequence[FlowRecord], label: str) -> Draft:
    """A process, a service, a fold of ended connections: the rule of their connections
    when it is one, else one remote they share, else their busiest service port."""
    same = _one(_connection(f).text for f in flows)
    if same is not None:
        return Draft(same, f"From {label}: " + _connection(flows[0]).note.split(": ", 1)[1])
    remote = _one(_remote(f)[0] for f in flows)
    if remote is not None:
        return _for_remote(remote, flows, label)
    ports: Counter[tuple[str, int, bool]] = Counter()
    for f in flows:
        if _proto(f) in _PORTED:
            served = _served_here(f)
            ports[(_proto(f), _local(f)[1] if served else _remote(f)[1], served)] += f.bytes
    if not ports:
        raise ValueError(f"{label}: its flows share no remote and no tcp/udp port a rule could match")
    (proto, port, served), _ = ports.most_common(1)[0]
    same = [f for f in flows if (_local(f)[1] if served else _remote(f)[1]) == port]
    draft = _for_port(proto, port, same, label)
    share = f" ({len(same)} of its {len(flows)} flows; rules match packets, not processes)"
    return Draft(draft.text, draft.note[:-1] + share + ".")


def rule_for(flows: Sequence[FlowRecord], by: str | None = None, key: str = "", label: str = "") -> Draft:
    """The count rule for one connection (`by` None, one flow) or a group (`by`: its
    grouping, `key`: its key, `flows`: its members). Raises ValueError when nothing
    a rule can match is common to them."""
    if by is None:
        if len(flows) != 1:
            raise ValueError("the selected flow is not in the latest sample any more")
        return _connection(flows[0])
    label = label or f"{by} {key}"
    net = _network(key)
    if net is not None:  # a remote address or network
        return _for_remote(net, flows, label)
    port = _port_of(key) if "port" in by else None
    if port is not None:
        return _for_port(*port, flows, label)
    if not flows:
        raise ValueError(f"{label}: none of its flows is in the latest sample any more")
    return _common(flows, label)


def remote_rule_for(flows: Sequence[FlowRecord], label: str) -> Draft:
    """The detail's `r`: everything from the remote its flows share."""
    remote = _one(_remote(f)[0] for f in flows)
    if remote is None:
        what = "they are not in the latest sample any more" if not flows else "they have several"
        raise ValueError(f"{label}: no one remote address ({what}); r in the table makes a rule for the row")
    return _for_remote(remote, flows, f"the remote {remote} of {label}")


# --- the keys ------------------------------------------------------------------------


def request(
    node: Widget,
    selection: Any,
    members: Callable[[], list[FlowRecord]],
    history: Sequence[Snapshot],
    *,
    remote: bool = False,
) -> None:
    """`r`: the editor with the selection's count rule, then the usual add (confirmed,
    audited). `selection` is the Flows pane's (None: no row); `members` its flows now;
    `remote`: the rule for their one remote (the detail's `r`)."""

    def drafted() -> Draft:
        single = getattr(selection, "flow", None) is not None
        by = None if single else getattr(selection, "by", None) or "flows"
        key = "" if single else str(getattr(selection, "group", "") or "")
        if remote:
            return remote_rule_for(members(), str(selection.title))
        return rule_for(members(), by, key, "" if single else str(selection.title))

    async def prepare(dialogs: Dialogs) -> Run | None:
        app = dashboard(node)
        if app.replay is not None:
            dialogs.say("a replay cannot change rules", severity="warning", timeout=None)
            return None
        if selection is None:
            dialogs.say("no flow selected: no flows to make a rule from yet", severity="warning")
            return None
        try:
            draft = drafted()
        except ValueError as exc:
            dialogs.say(f"no rule for this row: {exc}", severity="warning", timeout=8)
            return None
        settings = app.settings
        warm_while_editing(settings)
        current = await rules_change.read_rules(settings)
        flows = recent_flows(history)
        screen = RuleEditScreen(
            "Rule from a flow (count: last; deny, allow: first)",
            lambda rule: rules_change.editor_preview(rule, flows, [] if first(rule) else current),
            draft.text,
            note=draft.note,
        )
        rule: Rule | None = await dialogs.ask(screen)
        if rule is None:
            dialogs.say("no rule added")
            return None
        return through_gate(
            *await rules_change.add(settings, rule, current, flows, dialogs.actor, first=first(rule))
        )

    dashboard(node).act(
        ActionRequest("rules.add", "Add rule", prepare, failed_prefix="rules: nothing changed")
    )


def first(rule: Rule) -> bool:
    """A deny (or allow) goes first, so no rule already there takes its packets before
    it; a count goes last, so it changes nothing another rule decides."""
    return rule.action != "count"


class FlowDetailWithRule(FlowDetailScreen):
    """The flow detail with `r`: the rule for the remote it shows (closes the detail)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "r", "remote_rule", "Rule for the remote", tooltip="a count rule for this remote, in the editor"
        )
    ]

    def __init__(self, view: DetailView, on_rule: Callable[[], None]) -> None:
        super().__init__(view)
        self._on_rule = on_rule

    def on_mount(self) -> None:
        # (FlowDetailScreen.on_mount runs as well: Textual calls each class's handler.)
        if not dashboard(self).read_only:
            self.query_one(VerticalScroll).border_subtitle = "r: rule for the remote  esc closes"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # r changes rules: inert read-only (the action path would refuse it too)
        return not (action == "remote_rule" and dashboard(self).read_only)

    def action_remote_rule(self) -> None:
        self.dismiss(None)
        self._on_rule()


def parses(draft: Draft) -> Rule:
    """The draft's rule (tests: every draft is valid rule text)."""
    rule = parse_rule(draft.text)
    if rule is None:
        raise ValueError(f"empty rule from {draft!r}")
    return rule
