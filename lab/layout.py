"""What a lab is made of: names, addresses, ports and binaries, derived from one config.

The topology (a bridge on a private subnet, one namespace per part, no default route)
and why it is so: lab/README.md ("Topology").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Namespaces and links are named ebt-<name>-<part>; Linux caps link names at 15 bytes.
NAME_RE = re.compile(r"^[a-z0-9]{1,4}$")
PARTS = ("client", "lb", "stable", "canary")
HOST_OFFSETS = {"bridge": 1, "client": 10, "lb": 20, "stable": 31, "canary": 32}
VARIANTS = {"stable": "v1.0.0", "canary": "v1.1.0"}
# The fleet's nodes (`lab up --nodes N`, lab/nodes.py): node k at .NODE_OFFSET+k on the
# bridge, its pod link the /30 at .POD_NET_OFFSET+4(k-1); both clear of HOST_OFFSETS.
MAX_NODES = 8
NODE_OFFSET = 100
POD_NET_OFFSET = 192


@dataclass(frozen=True)
class LabConfig:
    name: str = "lab"
    """Instance name (1-4 of a-z0-9); names namespaces, links and the state file."""
    subnet: str = "198.18.0.0/24"
    """Private /24 for the lab's addresses; must not overlap any route of the host."""
    prometheus_port: int = 19090
    """Prometheus listens on 127.0.0.1:<port> in the root namespace."""
    rate: float = 20.0
    """Load generator requests per second."""
    weights: tuple[int, int] = (90, 10)
    """HAProxy weights (stable, canary)."""
    service_port: int = 8000
    app_port: int = 8080
    """HAProxy's traffic frontend, inside the lb namespace."""
    stats_port: int = 8404
    """HAProxy's stats page and Prometheus exporter, inside the lb namespace."""
    service_name: str = "checkout"
    """OTEL service.name of the instrumented service."""
    haproxy_bin: str = "haproxy"
    prometheus_bin: str = "prometheus"
    ip_bin: str = "ip"
    state_dir: str = "/run/ebpftop/lab"
    nodes: int = 0
    """Fleet nodes (0-8), each a namespace with its own agent and traffic (lab/nodes.py)."""

    def validate(self) -> None:
        from .errors import LabError

        if not NAME_RE.match(self.name):
            raise LabError("config", f"name {self.name!r}: use 1-4 characters of a-z and 0-9")
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as exc:
            raise LabError("config", f"subnet {self.subnet!r}: {exc}") from None
        if net.version != 4 or net.prefixlen != 24 or not net.is_private:
            raise LabError("config", f"subnet {self.subnet!r}: use a private IPv4 /24 such as 198.18.0.0/24")
        for label, port in (
            ("prometheus_port", self.prometheus_port),
            ("service_port", self.service_port),
            ("app_port", self.app_port),
            ("stats_port", self.stats_port),
        ):
            if not 1 <= port <= 65535:
                raise LabError("config", f"{label} {port}: use 1-65535")
        if self.app_port == self.stats_port:
            raise LabError("config", f"app_port and stats_port are both {self.app_port}")
        if (
            isinstance(self.nodes, bool)
            or not isinstance(self.nodes, int)
            or not 0 <= self.nodes <= MAX_NODES
        ):
            raise LabError("config", f"nodes {self.nodes!r}: use 0-{MAX_NODES}")
        if not self.rate > 0 or self.rate > 5000:
            raise LabError("config", f"rate {self.rate}: use more than 0 and at most 5000 requests/s")
        if len(self.weights) != 2 or any(not 0 <= w <= 256 for w in self.weights) or sum(self.weights) == 0:
            raise LabError(
                "config", f"weights {self.weights}: use two integers 0-256, not both 0 (stable, canary)"
            )


@dataclass(frozen=True)
class Layout:
    """Names and addresses of one lab instance."""

    config: LabConfig

    @property
    def prefix(self) -> str:
        return f"ebt-{self.config.name}-"

    def netns(self, part: str) -> str:
        return f"{self.prefix}{part}"

    def veth(self, part: str) -> str:
        """Root-side end of the part's veth; the peer inside the namespace is eth0."""
        return f"{self.prefix}{part}"

    def scope(self, part: str) -> str:
        """The part's cgroup, named like the scope `systemd-run --scope --unit` makes."""
        return f"{self.prefix}{part}.scope"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def namespaces(self) -> list[str]:
        nodes = [ns for k in self.node_ids for ns in (self.node_netns(k), self.pod_netns(k))]
        return [self.netns(p) for p in PARTS] + nodes

    @property
    def links(self) -> list[str]:
        return [self.bridge] + [self.veth(p) for p in PARTS] + [self.node_veth(k) for k in self.node_ids]

    # -- fleet nodes (lab/nodes.py) --

    @property
    def node_ids(self) -> range:
        return range(1, self.config.nodes + 1)

    def node_netns(self, k: int) -> str:
        return f"{self.prefix}n{k}"

    def pod_netns(self, k: int) -> str:
        return f"{self.prefix}p{k}"

    def node_veth(self, k: int) -> str:
        """Root-side end of node k's link to the bridge; eth0 inside the node."""
        return f"{self.prefix}n{k}"

    def node_addr(self, k: int) -> str:
        """Node k's address on the bridge (Prometheus scrapes its agent there)."""
        return str(self.network.network_address + NODE_OFFSET + k)

    def pod_link_addrs(self, k: int) -> tuple[str, str]:
        """(node side, pod side) of node k's pod link, a /30 of the lab's /24."""
        base = self.network.network_address + POD_NET_OFFSET + 4 * (k - 1)
        return str(base + 1), str(base + 2)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.config.subnet)

    def addr(self, part: str) -> str:
        return str(self.network.network_address + HOST_OFFSETS[part])

    def cidr(self, part: str) -> str:
        return f"{self.addr(part)}/{self.network.prefixlen}"

    def service_url(self, variant: str) -> str:
        return f"http://{self.addr(variant)}:{self.config.service_port}"

    def pprof_url(self, variant: str) -> str:
        """The service's net/http/pprof, reached across the bridge like its /metrics."""
        return f"{self.service_url(variant)}/debug/pprof"

    @property
    def app_url(self) -> str:
        return f"http://{self.addr('lb')}:{self.config.app_port}"

    @property
    def stats_url(self) -> str:
        return f"http://{self.addr('lb')}:{self.config.stats_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.config.prometheus_port}"

    @property
    def state_file(self) -> str:
        base = "state.json" if self.config.name == "lab" else f"state-{self.config.name}.json"
        return f"{self.config.state_dir}/{base}"

    @property
    def haproxy_socket(self) -> str:
        """HAProxy's runtime API: one path per instance, not in the temp dir, so it stays
        the same when `lab up` rebuilds a lab and a running dashboard keeps its rollout
        source."""
        base = "haproxy.sock" if self.config.name == "lab" else f"haproxy-{self.config.name}.sock"
        return f"{self.config.state_dir}/{base}"

    @property
    def lock_file(self) -> str:
        return self.state_file.removesuffix(".json") + ".lock"

    @property
    def tmp_prefix(self) -> str:
        return f"ebpftop-lab-{self.config.name}-"
