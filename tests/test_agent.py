"""`ebpftop agent` and its viewers, for real: an agent with real BPF collectors in a
namespace made here, two viewers in real ptys at once. They show the same flows; the
node holds one set of ebpftop programs (the agent's; the viewers hold none); a viewer
that stops reading makes the agent drop and count, never wait; SIGKILL of the agent
leaves nothing attached and every viewer says AGENT DOWN, then picks up a restarted
agent by itself; the viewers read it deflated, raw readers that ask nothing read it
plain. A fake agent on a unix socket sends hostile frames (and a deflate bomb): refused,
named by line, nothing crashes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from conftest import need_root

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pty_app import VENV_BIN, PtyApp  # noqa: E402

EBPFTOP = str(VENV_BIN / "ebpftop")
# A flow row: `proto src:sport → dst:dport`, or with the local address left out
# (`tcp :41001 → 10.1.2.2:7070`) when the layout is narrow.
FLOW = re.compile(r"(?:\b(tcp|udp) +)?(\d+\.\d+\.\d+\.\d+)?:(\d+) → (\d+\.\d+\.\d+\.\d+:\d+)")
SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
def serve(c):
    while c.recv(65536): pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = """
import socket, sys, time
conns = []
for sport in sys.argv[3:]:
    c = socket.socket(); c.bind(("", int(sport))); c.connect((sys.argv[1], int(sys.argv[2]))); conns.append(c)
while True:
    for c in conns: c.sendall(b"x" * 2000)
    time.sleep(0.1)
"""


def _config(tmp: Path) -> str:
    (tmp / "pins").mkdir()
    path = tmp / "config.toml"
    path.write_text(
        f'[audit]\nlog = "{tmp}/audit.jsonl"\nkey = "{tmp}/audit.key"\n'
        f'[rules]\npin_dir = "{tmp}/pins"\n[profiles]\nhz = 19\n'
    )
    return str(path)


def _held(pid: int, key: str = "prog_id") -> set[int]:
    """The BPF programs (`prog_id`) or maps (`map_id`) process `pid` holds, per /proc."""
    from ebpftop.collectors.selfcost.programs import held_prog_ids

    if key == "prog_id":
        return held_prog_ids(f"/proc/{pid}/fd")
    found = set()
    for info in Path(f"/proc/{pid}/fdinfo").glob("*"):
        with contextlib.suppress(OSError):
            found |= {
                int(v)
                for k, _, v in map(lambda s: s.partition(":"), info.read_text().splitlines())
                if k == key and v.strip().isdigit()
            }
    return found


def _prog_names(ids: set[int]) -> dict[int, str]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    return {p["id"]: p.get("name", "") for p in json.loads(out.stdout) if p["id"] in ids}


def _flows(text: str, sports: tuple[str, ...]) -> set[tuple[str, ...]]:
    """(proto, src, sport, dst:dport) of the rows from `sports` (src "" when not shown)."""
    return {
        (m.group(1) or "", m.group(2) or "", m.group(3), m.group(4))
        for m in FLOW.finditer(text)
        if m.group(3) in sports
    }


def _wait(pred, timeout: float, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(step)
    return pred()


def _stable(read, timeout: float, settle: float = 2.0):
    """`read()` once it is non-empty and has not changed for `settle` seconds."""
    end = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif last and time.monotonic() - since >= settle:
            break
    return last


def _pump_all(viewers: list[PtyApp], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for v in viewers:
            v.pump(0.05)


def _screens(viewers: list[PtyApp]) -> str:
    text = "\n\n".join(v.text() for v in viewers)
    Path("/tmp/test_agent_screens.txt").write_text(text)  # pytest cuts long messages
    return text


def _wait_screens(viewers: list[PtyApp], pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for v in viewers:
            v.pump(0.05)
        if all(pred(v.text()) for v in viewers):
            return True
    return False


def test_one_agent_many_viewers_same_flows_one_set_of_programs_and_agent_down(tmp_path):
    need_root()
    from netns import veth_pair

    config = _config(tmp_path)
    sock = str(tmp_path / "run" / "agent.sock")
    viewers: list[PtyApp] = []
    with veth_pair("ebag") as net:

        def start_agent() -> subprocess.Popen:
            log = open(tmp_path / "agent.log", "a", buffering=1)  # noqa: SIM115  # the agent's stderr, read at the end
            return net.a.popen(
                EBPFTOP, "--config", config, "--iface", net.a_if, "agent", "--socket", sock, "--queue", "30",
                bpf=True, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

        agent = start_agent()
        net.b.python(SERVER, net.b_ip4, "7070")
        time.sleep(0.5)
        sports = ("41001", "41002", "41003")
        net.a.python(CLIENT, net.b_ip4, "7070", *sports)
        try:
            assert _wait(lambda: os.path.exists(sock), 30), (tmp_path / "agent.log").read_text()
            # The agent's programs, attached before any viewer exists.
            # bcc loads the programs one by one: wait until the set stops growing.
            progs = _stable(
                lambda: {i for i, n in _prog_names(_held(agent.pid)).items() if "ebpftop_fl" in n}, 120
            )
            assert progs, f"the agent attached no flows program: {(tmp_path / 'agent.log').read_text()}"
            for _ in range(2):
                viewers.append(PtyApp([EBPFTOP, "--config", config, "--connect", sock], cols=200, rows=50))

            def our_flows(text: str) -> set[tuple[str, ...]]:
                return {
                    f for f in _flows(text, sports) if f[1] in ("", net.a_ip4) and f[3] == f"{net.b_ip4}:7070"
                }

            assert _wait_screens(viewers, lambda t: "via agent" in t and len(our_flows(t)) == 3, 120), (
                _screens(viewers)
            )
            # The same flow rows, by 5-tuple, on both screens.
            a, b = (our_flows(v.text()) for v in viewers)
            assert a == b and {f[2] for f in a} == set(sports), (a, b)

            # One set of programs on the node: the agent's; the viewers hold no BPF object at all.
            for v in viewers:
                for proc in v.tree():
                    assert not _held(proc.pid) and not _held(proc.pid, "map_id"), proc.cmdline()
            assert {i for i, n in _prog_names(_held(agent.pid)).items() if "ebpftop_fl" in n} == progs

            # A viewer that stops reading: the agent drops and counts, the others keep getting frames.
            stalled = socket.socket(socket.AF_UNIX)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(sock)
            reader = socket.socket(socket.AF_UNIX)
            reader.connect(sock)
            reader.settimeout(5)
            drops = _read_drops(reader, stalled, timeout=120)
            assert drops["reader_hosts_while_stalled"] >= 5, drops
            assert drops["stalled_drops"] > 0, drops
            reader.close()
            stalled.close()
            assert _wait_screens(viewers, lambda t: "via agent" in t and "AGENT DOWN" not in t, 10)

            # SIGKILL: nothing left attached, every viewer says so.
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            assert _wait_screens(viewers, lambda t: "AGENT DOWN" in t, 30), _screens(viewers)
            assert _wait(lambda: not _prog_names(progs), 30), _prog_names(progs)
            tc = net.a.run("tc", "filter", "show", "dev", net.a_if, "ingress").stdout
            tc += net.a.run("tc", "filter", "show", "dev", net.a_if, "egress").stdout
            assert "ebpftop" not in tc, tc
            links = net.a.run("bpftool", "net", "show", "dev", net.a_if, bpf=True).stdout
            assert "ebpftop" not in links, links

            # A restarted agent is picked up by the viewers by themselves, flows at once.
            agent = start_agent()
            assert _wait_screens(viewers, lambda t: "via agent" in t and len(our_flows(t)) == 3, 120), (
                _screens(viewers)
            )
        finally:
            for v in viewers:
                v.close()
            alive = agent.poll() is None
            if alive:
                agent.send_signal(signal.SIGTERM)
                agent.wait(30)
    log = (tmp_path / "agent.log").read_text()
    assert alive and agent.returncode == 0, (agent.returncode, log)
    assert re.search(r"ebpftop-agent\[\d+\]: INFO: stopped; nothing left attached", log), log
    assert re.search(r"viewer .* left \([1-9]\d* dropped", log), log
    # the pty viewers asked for deflate and got it; the raw readers above, asking nothing, read plain lines
    assert re.search(r"viewer pid \d+ left \(0 dropped, \d+ bytes sent, deflate of \d+\)", log), log


def _read_drops(reader: socket.socket, stalled: socket.socket, timeout: float) -> dict[str, int]:
    """Read `reader` while `stalled` reads nothing; then read `stalled` for its drops."""
    got = {"reader_hosts_while_stalled": 0, "stalled_drops": 0}
    buf = b""
    end = time.monotonic() + timeout
    # Long enough for the stalled viewer's socket buffer and its queue (30 frames) to fill.
    while time.monotonic() < end and got["reader_hosts_while_stalled"] < 40:
        chunk = reader.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        got["reader_hosts_while_stalled"] += sum(1 for line in lines if line.startswith(b'{"source":"host"'))
    stalled.settimeout(5)
    buf = b""
    while time.monotonic() < end and not got["stalled_drops"]:
        chunk = stalled.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b'{"source":"stream"'):
                got["stalled_drops"] = max(got["stalled_drops"], json.loads(line)["data"]["drops"])
    return got


# --- a hostile agent -------------------------------------------------------------------

MARKUP = "[bold red]pwn[/] [link=http://x]y[/link]"


def _frame(source: str, data: object, t: float, seq: int = 1) -> bytes:
    health = {"state": "ok", "message": "", "hint": "", "last_ok": t, "errors": 0}
    return (
        json.dumps({"source": source, "seq": seq, "time": t, "health": health, "data": data}).encode() + b"\n"
    )


def _host(t: float, name: str) -> dict[str, object]:
    return {
        "hostname": name, "kernel": "6.1", "uptime_s": 100.0, "cpu_percent": 5.0, "cpu_count": 2,
        "load": [0.1, 0.1, 0.1], "mem_total": 1 << 30, "mem_used": 1 << 29, "mem_percent": 50.0,
        "net_rx_bps": None, "net_tx_bps": None,
    }  # fmt: skip


class FakeAgent:
    """A unix-socket server that sends what a test gives it, then holds the line open;
    what the viewer sends it is kept in `received`."""

    def __init__(self, path: str, lines: list[bytes], then: list[bytes]) -> None:
        self.path, self.lines, self.then = path, lines, then
        self.go_on = threading.Event()
        self.received = bytearray()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()
        try:
            for line in self.lines:
                conn.sendall(line)
            # keep the link alive meanwhile: a `stream` heartbeat every half second
            seq = 100
            while not self.go_on.wait(0.5):
                seq += 1
                conn.sendall(
                    _frame(
                        "stream", {"drops": 0, "queued": 0, "queue_max": 30, "viewers": 1}, time.time(), seq
                    )
                )
            for line in self.then:
                conn.sendall(line)
            time.sleep(30)
        except OSError:
            pass
        finally:
            conn.close()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # until the connection closes
            while chunk := conn.recv(65536):
                self.received += chunk


def test_a_hostile_agent_is_refused_line_by_line_and_nothing_crashes(tmp_path):
    config = _config(tmp_path)
    sock = str(tmp_path / "fake.sock")
    now = time.time()
    header = {
        "format": "ebpftop-stream",
        "version": 1,
        "host": MARKUP + "\x1b[2J",
        "started": now,
        "agent_pid": 7,
    }
    lines = [
        json.dumps(header).encode() + b"\n",  # line 1
        _frame("host", _host(now, MARKUP), now),  # line 2: fine, markup shown as text
        _frame("host", _host(now, "a"), now + 1, 2).replace(b'"cpu_percent": 5.0', b'"cpu_percent": NaN'),
        _frame("host", _host(now, "b"), now + 2, 3).replace(b"1073741824", b"9" * 400),  # a huge number
        b"{not json at all\n",  # line 5
        b'{"source": "host", "x": "' + b"A" * (10 << 20) + b'"}\n',  # line 6: a 10 MB line
    ]  # fmt: skip
    fake = FakeAgent(sock, lines, then=[b"\xff\xfe not utf-8\n"])
    viewer = PtyApp([EBPFTOP, "--config", config, "--connect", sock], cols=160, rows=48)
    try:
        # four refused, the connection kept: the last refusal named by its line
        assert viewer.wait_for(lambda t: "refused line 6" in t, 60), viewer.text()
        text = viewer.text()
        assert "via agent [bold red]pwn[/]" in text  # the header host, as text
        assert "\x1b" not in "".join(viewer.screen.display)
        # the four refusals did not count the good frame out: the host it sent is shown, as text
        assert MARKUP[:15] in text
        fake.go_on.set()
        # the fifth: the viewer hangs up, says why, and keeps running (reconnecting)
        assert viewer.wait_for(lambda t: "AGENT DOWN" in t and "5 lines refused" in t, 30), viewer.text()
        assert viewer.proc.poll() is None
    finally:
        viewer.close()
        fake.srv.close()


def test_a_deflate_bomb_from_an_agent_is_refused_on_screen_and_the_viewer_keeps_running(tmp_path):
    """An agent that switches to deflate, sends one good frame, then a line that inflates
    past 16 MB: the viewer says AGENT DOWN and why (the line, the bomb), shows the good
    frame, and keeps reconnecting."""
    from ebpftop.core.stream import MAX_LINE, switch_line

    config = _config(tmp_path)
    sock = str(tmp_path / "bomb.sock")
    now = time.time()
    header = {"format": "ebpftop-stream", "version": 1, "host": "bomber", "started": now, "agent_pid": 7}
    z = zlib.compressobj()
    good = z.compress(_frame("host", _host(now, "bomb-host-shown"), now)) + z.flush(zlib.Z_SYNC_FLUSH)
    bomb = z.compress(b'{"source":"host","x":"' + b"A" * (MAX_LINE + 100)) + z.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000  # what makes it a bomb: 16 MB in a few KB
    payload = json.dumps(header).encode() + b"\n" + switch_line("deflate") + good + bomb
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock)
    srv.listen(8)
    conns: list[socket.socket] = []  # held open: the bomb, not a closed socket, ends each link

    def serve() -> None:
        with contextlib.suppress(OSError):  # until the test closes the socket
            while True:
                conns.append(srv.accept()[0])
                with contextlib.suppress(OSError):
                    conns[-1].sendall(payload)

    threading.Thread(target=serve, daemon=True).start()
    viewer = PtyApp([EBPFTOP, "--config", config, "--connect", sock], cols=160, rows=48)
    try:
        assert viewer.wait_for(lambda t: "AGENT DOWN" in t and "deflate bomb" in t, 60), viewer.text()
        assert "line 4: inflates beyond 16777216 bytes" in viewer.text()
        assert "bomb-host-shown" in viewer.text()  # the frame before the bomb was read
        assert viewer.proc.poll() is None
    finally:
        viewer.close()
        srv.close()
        for conn in conns:
            conn.close()


def test_a_missing_agent_is_said_and_the_viewer_keeps_trying(tmp_path):
    config = _config(tmp_path)
    sock = str(tmp_path / "nobody.sock")
    viewer = PtyApp([EBPFTOP, "--config", config, "--connect", sock], cols=160, rows=48)
    try:
        assert viewer.wait_for(lambda t: "AGENT DOWN" in t and "cannot connect" in t, 60), viewer.text()
        server = socket.socket(socket.AF_UNIX)
        server.bind(sock)
        server.listen(1)
        conn = _accept(server, 30)
        assert conn is not None, "the viewer did not try again"
        conn.close()
        server.close()
    finally:
        viewer.close()


def _accept(server: socket.socket, timeout: float) -> socket.socket | None:
    server.settimeout(timeout)
    try:
        return server.accept()[0]
    except TimeoutError:
        return None


@pytest.mark.parametrize("argv", [["--connect", ""], ["--connect", "host:99999"]])
def test_a_bad_address_exits_2_saying_so(argv, tmp_path):
    out = subprocess.run(
        [EBPFTOP, "--config", _config(tmp_path), *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "--connect" in out.stderr, out.stderr


def test_an_agent_beyond_loopback_without_a_token_refuses_to_start(tmp_path):
    out = subprocess.run(
        [EBPFTOP, "--config", _config(tmp_path), "agent", "--socket", str(tmp_path / "a.sock"),
         "--listen", "0.0.0.0:7999"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "--token-file" in out.stderr, out.stderr
    assert not (tmp_path / "a.sock").exists()


def test_sighup_reloads_a_good_config_keeps_the_old_on_a_bad_one_and_viewers_stay(tmp_path):
    need_root()
    from netns import netns

    config = Path(_config(tmp_path))
    base = config.read_text()
    sock = str(tmp_path / "run" / "agent.sock")
    log_path = tmp_path / "agent.log"

    def log_has(text: str) -> bool:
        return text in log_path.read_text()

    with netns("ebhu") as ns:
        with open(log_path, "w") as log:
            agent = ns.popen(EBPFTOP, "--config", str(config), "--iface", "lo", "agent", "--socket", sock,
                             "--no-deflate", bpf=True, stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
        try:
            assert _wait(lambda: log_has("collecting:"), 120), log_path.read_text()
            viewer = socket.socket(socket.AF_UNIX)
            viewer.connect(sock)
            viewer.settimeout(10)
            # it accepts deflate; the agent, told --no-deflate, answers plain lines (read below)
            viewer.sendall(b'{"accept": ["deflate"]}\n')
            config.write_text(base + "[ui]\nrefresh = -3\n")
            agent.send_signal(signal.SIGHUP)
            assert _wait(lambda: log_has("keeping the running one"), 30), log_path.read_text()
            assert "refresh" in log_path.read_text()  # the problem is named
            config.write_text(base + "[ui]\nrefresh = 2\n")
            agent.send_signal(signal.SIGHUP)
            assert _wait(lambda: log_has("changed refresh; restarting"), 30), log_path.read_text()
            assert _wait(lambda: log_path.read_text().count("collecting:") == 2, 120), log_path.read_text()
            assert "(every 2 s)" in log_path.read_text()
            # the viewer connected before the reload gets the new collectors' frames
            reloaded = time.time()
            assert _host_after(viewer, reloaded, 60), "no host frame after the reload"
            assert agent.poll() is None
            viewer.close()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
    assert agent.returncode == 0
    assert "stopped; nothing left attached" in log_path.read_text()


def _host_after(conn: socket.socket, t: float, timeout: float) -> bool:
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        chunk = conn.recv(1 << 20)
        if not chunk:
            return False
        *lines, buf = (buf + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b'{"source":"host"') and json.loads(line)["time"] > t:
                return True
    return False


def test_the_dashboard_views_a_local_agent_that_answers_and_collects_otherwise(tmp_path, monkeypatch):
    import argparse

    from ebpftop.cli import options
    from ebpftop.cli.commands.dashboard import runtime_for
    from ebpftop.core.settings import Settings
    from ebpftop.core.stream_client import ViewerRuntime

    path = str(tmp_path / "agent.sock")
    monkeypatch.setattr(options, "AGENT_SOCKET", path)
    settings = Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"))

    def args(**kw: object) -> argparse.Namespace:
        return argparse.Namespace(**{"connect": None, "connect_token_file": None, "no_agent": False, **kw})

    assert not isinstance(runtime_for(args(), settings), ViewerRuntime)  # nobody there
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def answer() -> None:
        with contextlib.suppress(OSError):  # until the test closes the socket
            while True:
                conn, _ = srv.accept()
                conn.sendall(
                    b'{"format":"ebpftop-stream","version":1,"host":"n","started":1.0,"agent_pid":3}\n'
                )
                conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        viewer = runtime_for(args(), settings)
        assert isinstance(viewer, ViewerRuntime) and viewer.client.address == path
        assert not isinstance(runtime_for(args(no_agent=True), settings), ViewerRuntime)
        other = runtime_for(args(connect="127.0.0.1:7999"), settings)
        assert isinstance(other, ViewerRuntime) and other.client.address == "127.0.0.1:7999"
    finally:
        srv.close()


def test_the_agent_serves_prometheus_metrics_while_it_collects(tmp_path):
    """`ebpftop agent --metrics HOST:PORT --bpf-stats`: the scrape is the agent's own store
    (no second collection), passes promtool, carries the run time of its TC programs (the
    kernel's BPF stats held on while it runs), and goes away with the agent."""
    need_root()
    import shutil
    import urllib.request

    log_path = tmp_path / "agent.log"
    sock = str(tmp_path / "run" / "agent.sock")
    with open(log_path, "w") as log:
        agent = subprocess.Popen(
            [EBPFTOP, "--config", _config(tmp_path), "--iface", "lo", "agent", "--socket", sock,
             "--metrics", "127.0.0.1:0", "--bpf-stats"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        found = _wait(lambda: re.search(r"metrics on (http://\S+)/metrics", log_path.read_text()), 120)
        assert found, log_path.read_text()
        url = found.group(1) + "/metrics"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def scrape() -> str:
            with opener.open(url, timeout=10) as r:
                return r.read().decode()

        def flowing() -> str | None:
            text = scrape()
            return text if 'ebpftop_source_up{source="flows"} 1' in text else None

        body = _wait(flowing, 120)
        assert body, scrape()

        def tc_ran() -> str | None:  # the scrapes themselves cross lo
            text = scrape()
            timed = re.findall(r'ebpftop_bpf_program_run_seconds_total\{[^}]*type="tc"[^}]*\} (\S+)', text)
            return text if any(float(x) > 0 for x in timed) else None

        ran = _wait(tc_ran, 60)
        assert ran, scrape()
        assert "ebpftop_bpf_stats_enabled 1.0" in ran
        if shutil.which("promtool"):
            check = subprocess.run(
                ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    assert agent.returncode == 0
    with pytest.raises(OSError):
        opener.open(url, timeout=5)


def test_the_agents_store_keeps_what_metrics_needs_not_the_uis_history(tmp_path):
    """The store of an agent serves /metrics alone: STORE_SECONDS of samples at its
    refresh, never more than the configured history (viewers keep their own)."""
    import argparse

    from ebpftop.cli.commands import agent as agent_cmd
    from ebpftop.core.settings import Settings

    class Server:
        def publish(self, snap) -> None:
            pass

    def kept(**kw: object) -> int:
        s = Settings(audit_log=str(tmp_path / "a.jsonl"), audit_key=str(tmp_path / "a.key"), **kw)  # type: ignore[arg-type]
        runtime = agent_cmd._Agent(argparse.Namespace(), s, Server())._build(s)  # type: ignore[arg-type]
        assert runtime.read_only
        return runtime.settings.history

    assert kept() == 120  # 300 by default for a dashboard
    assert kept(refresh=0.5) == 240
    assert kept(refresh=5.0) == 24
    assert kept(history=50) == 50


def test_the_agent_logs_a_sources_health_when_it_changes(caplog):
    """No screen on a node agent: its log says when a source goes down and why, and when it
    is back; a source that starts well says nothing more."""
    import logging

    from ebpftop.cli.commands.agent import HealthLog
    from ebpftop.core.model import Health, HealthState, Snapshot

    hl = HealthLog()
    caplog.set_level(logging.INFO, logger="ebpftop.agent")

    def feed(source: str, state: HealthState, message: str = "", hint: str = "") -> None:
        hl(Snapshot(source, 1, 1.0, Health(state, message, hint)))

    feed("host", HealthState.OK)
    feed("flows", HealthState.DOWN, "cannot relate the kernel's jiffies\x1b[2J", "check /proc")
    feed("flows", HealthState.DOWN, "still")  # unchanged state: said once
    feed("flows", HealthState.OK)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        ("WARNING", "source flows down: cannot relate the kernel's jiffies\\x1b[2J (check /proc)"),
        ("INFO", "source flows ok"),
    ], said


# --- a viewer's own actions ------------------------------------------------------------


def _audit_entries(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_an_action_from_a_terminal_viewer_goes_through_the_viewers_own_gate_and_audit_log(tmp_path):
    """`m` in a viewer of an agent: the viewer's prompt, confirmation and gate; the marker's
    intent and result in the viewer's own audit log (a chain its key verifies), and nothing
    sent to the agent but the hello line (an agent takes no action). A --kiosk viewer's `m`
    writes nothing."""
    from ebpftop.core.audit import verify
    from ebpftop.core.stream import DEFLATE, hello_line

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}  # nothing of the user's
    now = time.time()

    def served(host: str) -> list[bytes]:
        header = {"format": "ebpftop-stream", "version": 1, "host": host, "started": now, "agent_pid": 7}
        return [json.dumps(header).encode() + b"\n", _frame("host", _host(now, "calm-node"), now)]

    config = _config(tmp_path)
    log = tmp_path / "audit.jsonl"
    fake = FakeAgent(str(tmp_path / "calm.sock"), served("calm-agent"), then=[])
    viewer = PtyApp([EBPFTOP, "--config", config, "--connect", fake.path], cols=160, rows=48, env=env)
    try:
        assert viewer.wait_for(lambda t: "via agent calm-agent" in t and "calm-node" in t, 60), viewer.text()
        os.write(viewer.master, b"m")
        assert viewer.wait_for(lambda t: "Marker text (shown in recordings" in t, 30), viewer.text()
        os.write(viewer.master, b"viewer marker\r")
        confirming = "Publish the incident marker 'viewer marker'"
        assert viewer.wait_for(lambda t: confirming in t, 30), viewer.text()
        assert _audit_entries(log) == []  # nothing before the confirmation
        os.write(viewer.master, b"\r")
        assert viewer.wait_for(lambda t: "marker added" in t and len(_audit_entries(log)) == 2, 30), (
            viewer.text(),
            _audit_entries(log),
        )
        viewer.wait_for(lambda t: False, 1.0)  # whatever the action might have sent the agent
        assert viewer.proc.poll() is None
    finally:
        viewer.close()
        fake.srv.close()
    intent, result = _audit_entries(log)
    assert (intent["event"], result["event"]) == ("intent", "result")
    for entry in (intent, result):
        action = entry["action"]
        assert isinstance(action, dict)
        assert action["kind"] == "marker.add" and action["params"] == {"text": "viewer marker"}, entry
    assert result["ok"] is True and result["ref"] == intent["seq"] and result["message"] == "marker added"
    report = verify(log, tmp_path / "audit.key")
    assert report.ok and report.entries == 2 and not report.unfinished, report.summary()
    assert bytes(fake.received) == hello_line(accept=(DEFLATE,)), bytes(fake.received)

    # --kiosk: the key does nothing; nothing is audited, nothing reaches the agent
    kiosk_dir = tmp_path / "kiosk"
    kiosk_dir.mkdir()
    kiosk_config = _config(kiosk_dir)
    fake = FakeAgent(str(kiosk_dir / "calm.sock"), served("kiosk-agent"), then=[])
    viewer = PtyApp(
        [EBPFTOP, "--config", kiosk_config, "--kiosk", "--connect", fake.path], cols=160, rows=48, env=env
    )
    try:
        assert viewer.wait_for(lambda t: "via agent kiosk-agent" in t and "READ-ONLY" in t, 60), viewer.text()
        os.write(viewer.master, b"m")
        os.write(viewer.master, b" ")  # pause, after `m`: once PAUSED shows, `m` was read
        assert viewer.wait_for(lambda t: "PAUSED" in t, 30), viewer.text()
        viewer.wait_for(lambda t: False, 1.0)
        assert "Marker text" not in viewer.text()
        assert viewer.proc.poll() is None
    finally:
        viewer.close()
        fake.srv.close()
    assert not (kiosk_dir / "audit.jsonl").exists()
    assert bytes(fake.received) == hello_line(accept=(DEFLATE,)), bytes(fake.received)
