"""Making one fleet node misbehave: `ebpftop lab inject node2 retransmits=on flood=on agent=down`.

- retransmits=on|off|<P>%: iptables in the node's pod namespace drops that share of the
  TCP packets the pod sends (`-m statistic --mode random`; this machine has no sch_netem),
  so the pod's connections retransmit and the node's agent counts it. Default 8%: clear
  retransmits while connections still complete.
- flood=on|off|<rate>: lab/flood.py from the pod to its node (UDP to the discard port),
  so the node's bytes dwarf the others'.
- agent=down|up: stop or start the node's agent (its Prometheus target goes down).

Parsed here, whole, before anything changes; what is on is kept in `nodes.json` in the
lab's temp dir, so `lab status` says it and a node whose agent is down on purpose does
not make `lab up` rebuild the lab.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, replace

from . import nodes, procs
from .errors import LabError
from .faults import FLOOD_DEFAULT_BPS, FLOOD_PORT, flood_argv, rate_bps
from .layout import Layout
from .state import LabState

IPTABLES = "iptables"
TARGET = re.compile(r"^node\d+$")
RETRANSMITS_DEFAULT = 0.08
RETRANSMITS_MAX = 0.5
ALLOWED = {
    "retransmits": "on, off or a loss of 0.1-50%, e.g. 5% (on: 8%)",
    "flood": "on, off or a rate of 0.01-50MB/s, e.g. 500KB/s (on: 2MB/s)",
    "agent": "down or up",
}
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_FILE = "nodes.json"


@dataclass(frozen=True)
class NodeFault:
    """What one `inject node<k> ...` changes; None leaves that knob as it is."""

    retransmits: float | None = None
    """Drop probability of the pod's TCP packets; 0 is off."""
    flood_bps: int | None = None
    """0 is off."""
    agent: str | None = None
    """down or up."""


def is_node_target(target: str) -> bool:
    return TARGET.match(target) is not None


def _allowed_line() -> str:
    return "; ".join(f"{k}=<{v}>" for k, v in ALLOWED.items())


def parse(target: str, terms: list[str]) -> NodeFault:
    """`("node2", ["retransmits=on", "agent=down"])` -> NodeFault. Raises LabError naming
    the bad term and what is allowed. Which nodes exist is the lab's to say."""
    if not terms:
        raise LabError("inject", f"{target}: nothing to inject; terms: {_allowed_line()}")
    values: dict[str, object] = {}  # NodeFault's fields
    seen: set[str] = set()
    for term in terms:
        knob, sep, raw = term.partition("=")
        knob, raw = knob.strip().lower(), raw.strip().lower()
        if not sep or knob not in ALLOWED:
            raise LabError("inject", f"{target}: unknown term {term!r}; terms: {_allowed_line()}")
        if knob in seen:
            raise LabError("inject", f"{target}: {knob} given twice")
        seen.add(knob)
        bad = LabError("inject", f"{target}: bad value {raw!r} for {knob}: allowed {ALLOWED[knob]}")
        if knob == "retransmits":
            values[knob] = _loss(raw, bad)
        elif knob == "flood":
            values["flood_bps"] = _rate(raw, bad)
        elif raw in ("down", "up"):
            values[knob] = raw
        else:
            raise bad
    return NodeFault(**values)  # type: ignore[arg-type]


def _loss(raw: str, bad: LabError) -> float:
    if raw in ("on", "off"):
        return RETRANSMITS_DEFAULT if raw == "on" else 0.0
    m = _PERCENT.match(raw)
    if m is None or not 0.1 <= float(m.group(1)) <= RETRANSMITS_MAX * 100:
        raise bad
    return float(m.group(1)) / 100


def _rate(raw: str, bad: LabError) -> int:
    if raw in ("on", "off"):
        return FLOOD_DEFAULT_BPS if raw == "on" else 0
    rate = rate_bps(raw)
    if rate is None:
        raise bad
    return rate


@dataclass(frozen=True)
class NodeFaults:
    """What is on at one node now."""

    retransmits: float = 0.0
    flood_bps: int = 0
    agent_down: bool = False

    def describe(self) -> str:
        on = []
        if self.retransmits:
            on.append(f"retransmits={self.retransmits * 100:g}%")
        if self.flood_bps:
            on.append(f"flood={self.flood_bps / 1e6:g}MB/s")
        if self.agent_down:
            on.append("agent=down")
        return " ".join(on) or "none"


def load(tmpdir: str | None) -> dict[str, NodeFaults]:
    """node name -> faults on (nodes with none are left out)."""
    if not tmpdir:
        return {}
    try:
        with open(os.path.join(tmpdir, _FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    for name, d in data.items() if isinstance(data, dict) else ():
        try:
            out[name] = NodeFaults(
                retransmits=float(d.get("retransmits", 0.0)),
                flood_bps=int(d.get("flood_bps", 0)),
                agent_down=bool(d.get("agent_down", False)),
            )
        except (AttributeError, TypeError, ValueError):
            continue
    return out


def save(tmpdir: str, name: str, now: NodeFaults) -> None:
    data = {n: asdict(f) for n, f in load(tmpdir).items() if n != name}
    if now != NodeFaults():
        data[name] = asdict(now)
    path = os.path.join(tmpdir, _FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


# -- applying ------------------------------------------------------------------------


def apply(
    layout: Layout, st: LabState, k: int, wanted: NodeFault, scope: nodes.Scope, timeout: float
) -> list[str]:
    """Change node k as `wanted` says (the state's process list too); says what changed."""
    assert st.tmpdir is not None
    name = nodes.node_name(k)
    now = load(st.tmpdir).get(name, NodeFaults())
    done = []
    if wanted.retransmits is not None:
        _drop_tcp(layout, k, wanted.retransmits)
        now = replace(now, retransmits=wanted.retransmits)
        done.append(
            f"retransmits: {wanted.retransmits * 100:g}% of the TCP packets of {layout.pod_netns(k)} dropped"
            if wanted.retransmits
            else "retransmits off"
        )
    if wanted.flood_bps is not None:
        done.append(_flood(layout, st, k, wanted.flood_bps))
        now = replace(now, flood_bps=wanted.flood_bps)
    if wanted.agent is not None:
        # recorded first: a status read meanwhile says why the agent is gone
        save(st.tmpdir, name, replace(now, agent_down=wanted.agent == "down"))
        done.append(_agent(layout, st, k, wanted.agent == "up", scope, timeout))
        now = replace(now, agent_down=wanted.agent == "down")
    save(st.tmpdir, name, now)
    return [f"{name} {d}" for d in done]


def _drop_tcp(layout: Layout, k: int, probability: float) -> None:
    """The pod namespace's own OUTPUT chain holds only this rule: flushing it is ours."""
    pod = layout.pod_netns(k)
    base = [layout.config.ip_bin, "netns", "exec", pod, IPTABLES, "-w"]
    cmds = [[*base, "-F", "OUTPUT"]]
    if probability:
        cmds.append(
            [*base, "-A", "OUTPUT", "-p", "tcp", "-m", "statistic", "--mode", "random",
             "--probability", f"{probability:g}", "-j", "DROP"]
        )  # fmt: skip
    for argv in cmds:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=15)
        except FileNotFoundError:
            raise LabError(
                nodes.node_name(k), f"{argv[0]!r} not found (install iproute2, iptables)"
            ) from None
        if proc.returncode != 0:
            raise LabError(
                nodes.node_name(k), f"`{' '.join(argv[4:])}` in {pod} failed: {proc.stderr.strip()}"
            )


def _flood(layout: Layout, st: LabState, k: int, bps: int) -> str:
    assert st.tmpdir is not None
    part = nodes.part(k, "flood")
    old = st.proc(part)
    stopped = old is not None and procs.stop(old)
    st.processes = [p for p in st.processes if p.part != part]
    if not bps:
        return "flood off" if stopped else "flood was not running"
    to, _ = layout.pod_link_addrs(k)
    rec = procs.start(
        part,
        flood_argv(to, bps),
        log=os.path.join(nodes.node_dir(st.tmpdir, k), "flood.log"),
        netns=layout.pod_netns(k),
        ip_bin=layout.config.ip_bin,
        env={"PYTHONUNBUFFERED": "1"},
    )
    st.processes.append(rec)
    procs.wait_ready(rec, lambda: os.path.getsize(rec.log) > 0, timeout=20.0, what="flood")
    return f"flood {bps / 1e6:g} MB/s: UDP {layout.pod_netns(k)} -> {to}:{FLOOD_PORT}, pid {rec.pid}"


def _agent(layout: Layout, st: LabState, k: int, up: bool, scope: nodes.Scope, timeout: float) -> str:
    assert st.tmpdir is not None
    part = nodes.part(k, "agent")
    rec = st.proc(part)
    if not up:
        if rec is not None and procs.stop(rec, timeout=nodes.AGENT_STOP_S):
            return f"agent down: pid {rec.pid} stopped"
        return "agent was not running"
    if rec is not None and procs.alive(rec):
        return f"agent is running (pid {rec.pid})"
    new = nodes.start_agent(layout, st.tmpdir, k, scope)
    st.processes = [p for p in st.processes if p.part != part] + [new]
    procs.wait_ready(
        new,
        lambda: nodes.agent_ready(layout, k),
        timeout=timeout,
        what=f"its metrics at {layout.node_addr(k)}:{nodes.METRICS_PORT} with flows up",
    )
    return f"agent up: pid {new.pid}"
