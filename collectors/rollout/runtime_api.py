"""A client for HAProxy's runtime API (the `stats socket`), over a unix socket or TCP.

Independent of the lab and of rollouts, which both use it. Synchronous, one connection
per command; async callers wrap it in `asyncio.to_thread`. Addresses: a path (or
"unix:/path"), "host:port", "tcp:host:port", "[v6addr]:port".
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

DEFAULT_BACKEND = "be_app"
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced/inherited/configured maintenance, drain.
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
ADMIN_DRAIN = 0x08 | 0x10
ADMIN_STATES = ("ready", "drain", "maint")


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

    @property
    def admin(self) -> str:
        """ready / drain / maint, from the admin bits."""
        if self.admin_state & ADMIN_MAINT:
            return "maint"
        if self.admin_state & ADMIN_DRAIN:
            return "drain"
        return "ready"


def parse_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """(socket family, connect address). Raises RuntimeAPIError on a malformed address."""
    addr = address.strip()
    if addr.startswith("unix:"):
        addr = addr[5:]
        if not addr:
            raise RuntimeAPIError(f"runtime API address {address!r}: no socket path after 'unix:'")
        return socket.AF_UNIX, addr
    if addr.startswith("/") or addr.startswith("."):
        return socket.AF_UNIX, addr
    if addr.startswith("tcp:"):
        addr = addr[4:]
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuntimeAPIError(
            f"runtime API address {address!r}: use a socket path (/run/haproxy.sock) "
            "or host:port (127.0.0.1:9999)"
        )
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


class RuntimeAPI:
    def __init__(self, address: str, timeout: float = 2.0) -> None:
        self.address = address
        self.timeout = timeout

    @property
    def socket_path(self) -> str:
        return self.address

    def command(self, line: str) -> str:
        """Send one command; HAProxy answers and closes (non-interactive mode)."""
        if "\n" in line or "\r" in line or ";" in line:
            raise RuntimeAPIError(f"one command per call, without ';' or newlines: {line!r}")
        family, target = parse_address(self.address)
        # `timeout` bounds the whole exchange, not each read: an answer trickled a byte
        # at a time must not hold the caller past it
        end = time.monotonic() + self.timeout
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(target)
                s.settimeout(max(0.001, end - time.monotonic()))
                s.sendall(line.encode() + b"\n")
                chunks = []
                while True:
                    s.settimeout(max(0.001, end - time.monotonic()))
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except TimeoutError:
            raise RuntimeAPIError(
                f"HAProxy runtime API at {self.address}: no answer within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise RuntimeAPIError(f"HAProxy runtime API at {self.address}: {exc.strerror or exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def servers_state(self, backend: str = DEFAULT_BACKEND) -> list[ServerState]:
        """`show servers state <backend>` parsed by its own header line."""
        out = self.command(f"show servers state {backend}")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        # Line 1 is the format version, then a "# field field ..." header, then one row per server.
        at = next((i for i, ln in enumerate(lines) if ln.startswith("#")), None)
        if at is None:
            raise RuntimeAPIError(f"show servers state {backend}: unexpected answer {out.strip()[:200]!r}")
        header = lines[at][1:].split()
        servers = []
        for ln in lines[at + 1 :]:
            row = dict(zip(header, ln.split(), strict=False))  # a short row is refused below
            if len(row) < len(header):
                raise RuntimeAPIError(f"show servers state {backend}: short row {ln[:200]!r}")
            port = row.get("srv_port")
            try:
                servers.append(
                    ServerState(
                        backend=row["be_name"],
                        name=row["srv_name"],
                        addr=row.get("srv_addr", ""),
                        port=int(port) if port and port.isdigit() else None,
                        op_state=OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"]),
                        admin_state=int(row["srv_admin_state"]),
                        weight=int(row["srv_uweight"]),
                        initial_weight=int(row["srv_iweight"]),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise RuntimeAPIError(
                    f"show servers state {backend}: unreadable row {ln[:200]!r} ({exc})"
                ) from None
        return servers

    def weights(self, backend: str = DEFAULT_BACKEND) -> dict[str, int]:
        return {s.name: s.weight for s in self.servers_state(backend)}

    @staticmethod
    def weight_command(backend: str, server: str, weight: int) -> str:
        if not 0 <= weight <= 256:
            raise RuntimeAPIError(f"weight {weight} for {backend}/{server}: HAProxy accepts 0-256")
        return f"set server {backend}/{server} weight {int(weight)}"

    @staticmethod
    def state_command(backend: str, server: str, state: str) -> str:
        if state not in ADMIN_STATES:
            raise RuntimeAPIError(
                f"state {state!r} for {backend}/{server}: use one of {', '.join(ADMIN_STATES)}"
            )
        return f"set server {backend}/{server} state {state}"

    def run_silent(self, line: str) -> None:
        """A command whose success is an empty answer; anything else is HAProxy's reason."""
        out = self.command(line).strip()
        if out:
            raise RuntimeAPIError(f"{line}: {out}")

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        self.run_silent(self.weight_command(backend, server, weight))

    def set_state(self, backend: str, server: str, state: str) -> None:
        self.run_silent(self.state_command(backend, server, state))
