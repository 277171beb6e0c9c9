"""HAProxy for the lab: its configuration, and a client for its runtime API.

`RuntimeAPI` is deliberately independent of the lab (a socket path in, parsed answers
out) so the rollout controller uses the same client against any HAProxy whose
`stats socket ... level admin` it can reach. It is synchronous and short-lived per
command; async callers wrap it in `asyncio.to_thread`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

BACKEND = "be_app"
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class RuntimeAPIError(Exception):
    """The runtime API could not be reached or refused a command (its answer included)."""


@dataclass(frozen=True)
class ServerState:
    backend: str
    name: str
    addr: str
    port: int | None
    op_state: str
    """running / stopped / starting / stopping (srv_op_state)."""
    admin_state: int
    """srv_admin_state bit field; 0 means ready (not in maintenance or drain)."""
    weight: int
    """Current user weight (srv_uweight)."""
    initial_weight: int
    """Weight from the configuration (srv_iweight)."""


class RuntimeAPI:
    def __init__(self, socket_path: str, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one command; HAProxy answers and closes (non-interactive mode)."""
        if "\n" in line or ";" in line:
            raise RuntimeAPIError(f"one command per call, without ';' or newlines: {line!r}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.socket_path)
                s.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RuntimeAPIError(f"HAProxy runtime API at {self.socket_path}: {exc.strerror or exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def servers_state(self, backend: str = BACKEND) -> list[ServerState]:
        """`show servers state <backend>` parsed by its own header line."""
        out = self.command(f"show servers state {backend}")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        # Line 1 is the format version, then a "# field field ..." header, then one row per server.
        at = next((i for i, ln in enumerate(lines) if ln.startswith("#")), None)
        if at is None:
            raise RuntimeAPIError(f"show servers state {backend}: unexpected answer {out.strip()[:200]!r}")
        header = lines[at][1:].split()
        servers = []
        for ln in lines[at + 1:]:
            row = dict(zip(header, ln.split()))
            if len(row) < len(header):
                raise RuntimeAPIError(f"show servers state {backend}: short row {ln[:200]!r}")
            port = row.get("srv_port")
            servers.append(ServerState(
                backend=row["be_name"], name=row["srv_name"], addr=row.get("srv_addr", ""),
                port=int(port) if port and port.isdigit() else None,
                op_state=OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"]),
                admin_state=int(row["srv_admin_state"]),
                weight=int(row["srv_uweight"]), initial_weight=int(row["srv_iweight"]),
            ))
        return servers

    def weights(self, backend: str = BACKEND) -> dict[str, int]:
        return {s.name: s.weight for s in self.servers_state(backend)}

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise RuntimeAPIError(f"weight {weight} for {backend}/{server}: HAProxy accepts 0-256")
        out = self.command(f"set server {backend}/{server} weight {int(weight)}").strip()
        if out:  # success is silent; anything else is HAProxy's reason
            raise RuntimeAPIError(f"set server {backend}/{server} weight {weight}: {out}")


def render_config(*, lb_addr: str, app_port: int, stats_port: int, socket_path: str, pid_file: str,
                  servers: dict[str, str], weights: dict[str, int]) -> str:
    """`servers` maps server name -> host:port; weights by the same names."""
    server_lines = "\n".join(
        f"    server {name} {addr} weight {weights[name]} check inter 1s fall 2 rise 1"
        for name, addr in servers.items()
    )
    return f"""\
# Written by `ebpftop lab`; removed by `ebpftop lab down`.
global
    stats socket {socket_path} mode 600 level admin
    stats timeout 10s
    pidfile {pid_file}
    nbthread 2

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s

frontend fe_app
    bind {lb_addr}:{app_port}
    # The services' knob endpoints are for `ebpftop lab inject`, not for clients.
    http-request deny deny_status 403 if {{ path_beg /-/ }}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /healthz
{server_lines}

frontend fe_stats
    bind {lb_addr}:{stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s
"""
