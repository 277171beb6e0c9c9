"""HAProxy controller pieces that need no lab: runtime API addresses (unix or TCP),
the commands each rollback mode sends, and refusals before anything is sent.
The real HAProxy is exercised in test_rollout_lab.py."""

from __future__ import annotations

import socket
import threading

import pytest

from ebpftop.collectors.rollout.base import ControllerError
from ebpftop.collectors.rollout.haproxy import HAProxyController
from ebpftop.collectors.rollout.runtime_api import RuntimeAPI, RuntimeAPIError, parse_address

SHOW = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
srv_check_addr srv_agent_addr srv_agent_port
3 be_app 1 stable 10.0.0.1 2 0 90 90 5 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0
3 be_app 2 canary 10.0.0.2 2 8 0 10 5 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0
"""


class FakeTCPRuntime:
    """Answers like HAProxy's non-interactive runtime API on 127.0.0.1 (stats socket ipv4@)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile().readline().strip()
                self.received.append(line)
                conn.sendall((SHOW if line.startswith("show servers state") else "\n").encode())


@pytest.fixture
def tcp():
    fake = FakeTCPRuntime()
    yield fake
    fake.sock.close()


def test_addresses():
    assert parse_address("/run/haproxy.sock") == (socket.AF_UNIX, "/run/haproxy.sock")
    assert parse_address("unix:/run/h.sock") == (socket.AF_UNIX, "/run/h.sock")
    assert parse_address("tcp:127.0.0.1:9999") == (socket.AF_INET, ("127.0.0.1", 9999))
    assert parse_address("[::1]:9999") == (socket.AF_INET6, ("::1", 9999))
    for bad in ("haproxy", "host:99999", "unix:"):
        with pytest.raises(RuntimeAPIError, match="runtime API address"):
            parse_address(bad)


async def test_state_and_drain_rollback_over_tcp(tcp):
    c = HAProxyController("checkout", tcp.address, mode="drain")
    st = await c.state()
    # The canary is draining (admin bit 0x08) at weight 0: no traffic goes to it.
    assert (st.stable_weight, st.canary_weight, st.phase) == (100.0, 0.0, "rolled back")
    assert [(b.name, b.variant, b.weight, b.state) for b in st.backends] == [
        ("stable", "stable", 90, "running"),
        ("canary", "canary", 0, "running, drain"),
    ]
    plan = c.plan_rollback(st)
    assert [r.body for r in plan.requests] == [
        "set server be_app/canary weight 0",
        "set server be_app/canary state drain",
    ]
    assert "rolled back" in await c.rollback(plan)
    assert tcp.received[-3:-1] == [
        "set server be_app/canary weight 0",
        "set server be_app/canary state drain",
    ]


def test_maint_mode_and_bad_configuration():
    c = HAProxyController("checkout", "/x.sock", canary=("c1", "c2"), mode="maint")
    assert [r.body for r in c.plan_rollback().requests] == [
        "set server be_app/c1 weight 0",
        "set server be_app/c1 state maint",
        "set server be_app/c2 weight 0",
        "set server be_app/c2 state maint",
    ]
    with pytest.raises(ControllerError, match="mode 'off'"):
        HAProxyController("checkout", "/x.sock", mode="off")
    with pytest.raises(ControllerError, match="both canary and stable"):
        HAProxyController("checkout", "/x.sock", canary=("a",), stable=("a",))


async def test_unknown_servers_are_named(tcp):
    c = HAProxyController("checkout", tcp.address, canary=("ghost",))
    with pytest.raises(ControllerError, match=r"has no server ghost .*it has: canary, stable"):
        await c.state()


def test_commands_with_separators_are_refused_before_sending(tcp):
    api = RuntimeAPI(tcp.address)
    with pytest.raises(RuntimeAPIError, match="one command"):
        api.command("show info\nshutdown frontend fe_app")
    assert tcp.received == []


async def test_a_damaged_rollback_memory_is_named_and_the_source_keeps_working(tcp, tmp_path):
    from ebpftop.collectors.rollout.memory import RollbackMemory

    memory = RollbackMemory(tmp_path / "rollbacks.json")
    memory.path.write_text('{"rollbacks": [{"service": "checkout"')  # cut short
    c = HAProxyController("checkout", tcp.address, memory=memory)
    st = await c.state()
    assert (st.stable_weight, st.canary_weight) == (100.0, 0.0)
    assert f"rollback memory {memory.path} is damaged" in st.message and "remove it" in st.message
    with pytest.raises(ControllerError, match=r"rollbacks\.json is damaged"):
        c.plan_undo()
    memory.path.unlink()
    with pytest.raises(ControllerError, match=r"nothing to undo: ebpftop has no rollback of backend be_app"):
        c.plan_undo()
