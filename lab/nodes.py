"""The lab's fleet (`ebpftop lab up --nodes N`): N nodes, each an ebpftop agent with
traffic of its own, scraped by the lab's Prometheus. lab/README.md ("Fleet nodes").

Node k is a namespace `ebt-<name>-n<k>` on the lab bridge (Prometheus scrapes its agent
there) and a "pod" namespace `ebt-<name>-p<k>` behind it on a veth pair of its own. On
this machine every node shares one kernel and the TCP tracepoints are host-wide: traffic
between nodes would show each retransmit to both ends' agents. So each node's traffic
stays inside the node (pod -> node), on addresses no other node uses, and each agent's
flows (and the retransmits looked up by their addresses) are its node's alone.

`nodes(config)` is the public view of a running lab's nodes (names, addresses, metrics
URL, agent socket, TCP address and token): what a fleet test or viewer needs.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from . import procs, topology
from . import state as statefile
from .errors import LabError
from .layout import LabConfig, Layout
from .web import fetch

SERVER_PORT = 7000
METRICS_PORT = 9464
STREAM_PORT = 9465
SHORT_CONNS_PER_S = 5.0
STREAM_BPS = 16_000
READY_TIMEOUT = 120.0  # N agents compile their BPF at once on a small machine
HISTORY_S = 30.0
AGENT_STOP_S = 10.0  # SIGTERM: the agent detaches its BPF, then exits
PIN_ROOT = "/sys/fs/bpf/ebpftop"
NODE_IF, POD_IF = "eth0", "pod"  # inside the node: its bridge link, its pod link
_FLOWS_UP = re.compile(rb'^ebpftop_source_up\{source="flows"\} 1(\.0)?$', re.M)

Scope = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Node:
    """One node of a running lab, as a fleet view or test reaches it."""

    name: str
    """node<k>; also the `node` label of its Prometheus target."""
    index: int
    netns: str
    pod_netns: str
    addr: str
    """On the lab bridge, reachable from the root namespace."""
    metrics_url: str
    """The agent's Prometheus /metrics."""
    metrics_target: str
    """host:port as the lab's Prometheus scrapes it (job `ebpftop`)."""
    agent_socket: str
    agent_address: str
    """host:port of the agent's TCP stream (needs `token_file`)."""
    token_file: str
    node_pod_addr: str
    """The node's end of its pod link: the traffic's server and the flood's target."""
    pod_addr: str


def node_name(k: int) -> str:
    return f"node{k}"


def node_dir(tmpdir: str, k: int) -> str:
    return os.path.join(tmpdir, node_name(k))


def token_file(tmpdir: str) -> str:
    return os.path.join(tmpdir, "nodes", "agent.token")


def pin_dir(layout: Layout, k: int) -> str:
    return f"{PIN_ROOT}/lab-{layout.config.name}-n{k}"


def describe(layout: Layout, tmpdir: str) -> list[Node]:
    """The nodes `layout`'s config asks for, with their paths under `tmpdir`."""
    out = []
    for k in layout.node_ids:
        addr = layout.node_addr(k)
        node_side, pod_side = layout.pod_link_addrs(k)
        out.append(
            Node(
                name=node_name(k),
                index=k,
                netns=layout.node_netns(k),
                pod_netns=layout.pod_netns(k),
                addr=addr,
                metrics_url=f"http://{addr}:{METRICS_PORT}/metrics",
                metrics_target=f"{addr}:{METRICS_PORT}",
                agent_socket=os.path.join(node_dir(tmpdir, k), "agent.sock"),
                agent_address=f"{addr}:{STREAM_PORT}",
                token_file=token_file(tmpdir),
                node_pod_addr=node_side,
                pod_addr=pod_side,
            )
        )
    return out


def nodes(config: LabConfig | None = None) -> list[Node]:
    """The nodes of the running lab `config` names (its state file says how many and
    where); [] when it is not up or has none."""
    from .manager import DEFAULT_CONFIG, config_from_state

    st = statefile.load(Layout(config or DEFAULT_CONFIG).state_file)
    if st is None or not st.tmpdir:
        return []
    return describe(Layout(config_from_state(st)), st.tmpdir)


def scrape_targets(layout: Layout) -> dict[str, str]:
    """node name -> host:port for the lab's Prometheus (empty without nodes)."""
    return {node_name(k): f"{layout.node_addr(k)}:{METRICS_PORT}" for k in layout.node_ids}


# -- network -------------------------------------------------------------------------


def create_network(layout: Layout, record: Callable[[str, str], None]) -> None:
    """Each node's namespace on the bridge and its pod namespace behind it."""
    for k in layout.node_ids:
        ns, pod, veth = layout.node_netns(k), layout.pod_netns(k), layout.node_veth(k)
        node_side, pod_side = layout.pod_link_addrs(k)
        topology.ip(layout, "netns", "add", ns)
        record("netns", ns)
        topology.ip(layout, "link", "add", veth, "type", "veth", "peer", "name", NODE_IF, "netns", ns)
        record("link", veth)
        topology.ip(layout, "link", "set", veth, "master", layout.bridge, "up")
        topology.ip(layout, "-n", ns, "link", "set", "lo", "up")
        topology.ip(layout, "-n", ns, "addr", "add", f"{layout.node_addr(k)}/24", "dev", NODE_IF)
        topology.ip(layout, "-n", ns, "link", "set", NODE_IF, "up")
        topology.ip(layout, "netns", "add", pod)
        record("netns", pod)
        # Both ends live in namespaces: `ip netns delete` of either removes the pair.
        topology.ip(
            layout, "-n", ns, "link", "add", POD_IF, "type", "veth", "peer", "name", "eth0", "netns", pod
        )
        topology.ip(layout, "-n", ns, "addr", "add", f"{node_side}/30", "dev", POD_IF)
        topology.ip(layout, "-n", ns, "link", "set", POD_IF, "up")
        topology.ip(layout, "-n", pod, "link", "set", "lo", "up")
        # The /30 is the pod's only route: it reaches its node and nothing else.
        topology.ip(layout, "-n", pod, "addr", "add", f"{pod_side}/30", "dev", "eth0")
        topology.ip(layout, "-n", pod, "link", "set", "eth0", "up")


# -- processes -----------------------------------------------------------------------


def part(k: int, what: str) -> str:
    """State-file part name of node k's process: agent, server, load or flood."""
    return f"{node_name(k)}-{what}"


def ebpftop_argv() -> list[str]:
    """The `ebpftop` console script beside this interpreter (the venv's), else the same
    entry point through the interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "ebpftop")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "import sys; from ebpftop.cli.main import main; sys.exit(main())"]


def write_files(layout: Layout, tmpdir: str) -> None:
    """The shared token (0600) and each node's configuration, before any agent starts."""
    token = token_file(tmpdir)
    os.makedirs(os.path.dirname(token), mode=0o700, exist_ok=True)
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    for k in layout.node_ids:
        d = node_dir(tmpdir, k)
        os.makedirs(os.path.join(d, "rules"), exist_ok=True)
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(node_config(d, pin_dir(layout, k)))


def node_config(d: str, pins: str) -> str:
    """Light on purpose (N agents share two CPUs): no CPU profiles, no canary, no rollout."""
    return (
        "# Written by `ebpftop lab up --nodes`; removed by `ebpftop lab down`.\n"
        "[ui]\nrefresh = 1\n"
        f'[audit]\nlog = "{d}/audit.jsonl"\nkey = "{d}/audit.key"\n'
        f'[rules]\npin_dir = "{pins}"\nstate_dir = "{d}/rules"\n'
        "[profiles]\nhz = 0\n"
    )


# `ip netns exec` gives its command a mount namespace of its own with the node's sysfs
# (the flows collector reads /sys/class/net there) and nothing mounted below /sys. The
# agent needs tracefs for the TCP tracepoints: mounted again in that private mount
# namespace, so the host's mounts stay as they are. bpffs there is a fresh instance:
# whatever an agent pins is its own and goes away with it.
_MOUNTS = (
    "mount -t tracefs tracefs /sys/kernel/tracing; mount -t debugfs debugfs /sys/kernel/debug; "
    'mount -t bpf bpf /sys/fs/bpf; exec "$@"'
)


def start_agent(layout: Layout, tmpdir: str, k: int, scope: Scope) -> statefile.ProcRecord:
    d, addr = node_dir(tmpdir, k), layout.node_addr(k)
    argv = [
        "sh",
        "-c",
        _MOUNTS,
        "ebpftop-node",
        *ebpftop_argv(),
        "--config",
        os.path.join(d, "config.toml"),
        "--iface",
        NODE_IF,
        "--iface",
        POD_IF,
        "agent",
        "--socket",
        os.path.join(d, "agent.sock"),
        "--metrics",
        f"{addr}:{METRICS_PORT}",
        "--listen",
        f"{addr}:{STREAM_PORT}",
        "--token-file",
        token_file(tmpdir),
        # a viewer of a lab node needs little back-history; 300 s of it costs each agent
        # ~300 MB and a growing share of a CPU here
        "--history",
        f"{HISTORY_S:g}",
    ]
    return procs.start(
        part(k, "agent"),
        argv,
        log=os.path.join(d, "agent.log"),
        netns=layout.node_netns(k),
        ip_bin=layout.config.ip_bin,
        env={"PYTHONUNBUFFERED": "1"},
        cgroup=scope(f"n{k}"),
    )


def agent_ready(layout: Layout, k: int) -> bool:
    """Its /metrics answers, from the root namespace, with the flows source up."""
    try:
        code, body = fetch(f"http://{layout.node_addr(k)}:{METRICS_PORT}/metrics", timeout=2.0)
    except OSError:
        return False
    return code == 200 and _FLOWS_UP.search(body) is not None


def start(
    layout: Layout,
    st: statefile.LabState,
    save: Callable[[], None],
    say: Callable[[str], None],
    scope: Scope,
) -> None:
    """Every node's traffic and agent, recorded as each starts; returns once every agent
    serves metrics with its flows source up. Raises LabError naming the node."""
    assert st.tmpdir is not None
    tmpdir = st.tmpdir
    write_files(layout, tmpdir)
    python = [sys.executable, "-m", "ebpftop.lab.nodetraffic"]
    env = {"PYTHONUNBUFFERED": "1"}
    agents = []
    for k in layout.node_ids:
        d = node_dir(tmpdir, k)
        node_side, _ = layout.pod_link_addrs(k)
        server = procs.start(
            part(k, "server"),
            [*python, "serve", "--listen", node_side, "--port", str(SERVER_PORT)],
            log=os.path.join(d, "server.log"),
            netns=layout.node_netns(k),
            ip_bin=layout.config.ip_bin,
            env=env,
            cgroup=scope(f"n{k}"),
        )
        st.processes.append(server)
        save()
        load = procs.start(
            part(k, "load"),
            [
                *python,
                "client",
                "--to",
                node_side,
                "--port",
                str(SERVER_PORT),
                "--conns",
                f"{SHORT_CONNS_PER_S:g}",
                "--stream",
                str(STREAM_BPS),
            ],
            log=os.path.join(d, "load.log"),
            netns=layout.pod_netns(k),
            ip_bin=layout.config.ip_bin,
            env=env,
            cgroup=scope(f"p{k}"),
        )
        st.processes.append(load)
        save()
        agent = start_agent(layout, tmpdir, k, scope)
        st.processes.append(agent)
        save()
        agents.append((k, agent))
    # The agents compile and attach at the same time; each is waited for in turn.
    deadline = time.monotonic() + READY_TIMEOUT
    for k, agent in agents:
        procs.wait_ready(
            agent,
            functools.partial(agent_ready, layout, k),
            timeout=max(1.0, deadline - time.monotonic()),
            what=f"its metrics at {layout.node_addr(k)}:{METRICS_PORT} with flows up",
        )
        say(
            f"{node_name(k)}: agent pid {agent.pid}, metrics {layout.node_addr(k)}:{METRICS_PORT}, "
            f"stream {layout.node_addr(k)}:{STREAM_PORT}; pod {layout.pod_netns(k)} -> "
            f"{layout.pod_link_addrs(k)[0]}:{SERVER_PORT}"
        )


def stop_agents(st: statefile.LabState | None) -> list[str]:
    """SIGTERM every node agent at once (each detaches its BPF), SIGKILL what is left
    after AGENT_STOP_S; before the rest of `lab down`, whose stops go one by one."""
    if st is None:
        return []
    running = [r for r in st.processes if r.part.endswith("-agent") and procs.alive(r)]
    found = []
    for rec in running:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(rec.pid)
            p.send_signal(signal.SIGTERM)
            found.append((rec, p))
    _gone, alive = psutil.wait_procs([p for _, p in found], timeout=AGENT_STOP_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    for rec, _ in found:
        procs.stop(rec)  # reaps it
    return [f"process {rec.part} (pid {rec.pid})" for rec, _ in found]


def remove_pins(layout: Layout) -> list[str]:
    """Node agents' bpffs pin dirs of this instance, by name (the state file may be gone)."""
    removed = []
    for path in sorted(glob.glob(f"{PIN_ROOT}/lab-{layout.config.name}-n*")):
        if re.fullmatch(r"n\d+", path.rsplit("-", 1)[-1]):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(f"bpffs pins {path}")
    return removed


def require(layout: Layout, target: str) -> int:
    """The k of `target` (node<k>) on this lab; LabError naming what is allowed."""
    m = re.fullmatch(r"node(\d+)", target)
    have = layout.config.nodes
    if not have:
        raise LabError(
            "inject",
            f"{target}: this lab has no nodes (bring it up with `ebpftop lab up --nodes N`, N 1-8)",
        )
    if m is None or not 1 <= int(m.group(1)) <= have:
        allowed = "node1" if have == 1 else f"node1-node{have}"
        raise LabError("inject", f"unknown node {target!r}: this lab has {allowed}")
    return int(m.group(1))
