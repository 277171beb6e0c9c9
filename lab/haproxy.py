"""HAProxy for the lab: its configuration. The runtime API client is the rollout
controller's (`collectors/rollout/runtime_api.py`), re-exported here for the lab.
"""

from __future__ import annotations

from ebpftop.collectors.rollout.runtime_api import DEFAULT_BACKEND as BACKEND
from ebpftop.collectors.rollout.runtime_api import OP_STATES, RuntimeAPI, RuntimeAPIError, ServerState

# the runtime API client, re-exported for the lab manager and its tests
__all__ = ["BACKEND", "OP_STATES", "RuntimeAPI", "RuntimeAPIError", "ServerState", "render_config"]


def render_config(
    *,
    lb_addr: str,
    app_port: int,
    stats_port: int,
    socket_path: str,
    pid_file: str,
    servers: dict[str, str],
    weights: dict[str, int],
) -> str:
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
    # The services' knob and pprof endpoints are for `ebpftop lab inject` and the
    # dashboard (across the bridge), not for clients.
    http-request deny deny_status 403 if {{ path_beg /-/ }} || {{ path_beg /debug/ }}
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
