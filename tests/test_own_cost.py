"""ebpftop's own cost: the selfcost source, the `$` screen and `snapshot --json`'s own_cost.

The screen turns the kernel's BPF run-time stats on while it is open and off when it
closes; against real BPF (a veth pair in namespaces made here) the flows program's run
count grows with the packets sent while it is open, and stops once it is closed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_support import (
    assert_nothing_raw_reaches_the_terminal,
    make_app,
    screen_text,
    snap,
    terminal_bytes,
)
from test_app_hostile import HOSTILE, MARKUP

from ebpftop.collectors.flows.model import FlowsData
from ebpftop.collectors.profiles.model import ProfilesData
from ebpftop.collectors.selfcost import collector as selfcost_mod
from ebpftop.collectors.selfcost.collector import SelfCostCollector
from ebpftop.collectors.selfcost.model import STATS_OFF, STATS_ON, BpfStats, ProgCost, SelfCostData
from ebpftop.collectors.selfcost.programs import owner_of
from ebpftop.collectors.selfcost.summary import losses, own_cost
from ebpftop.core.settings import Settings
from ebpftop.tui.screens import own_cost as own_cost_screen
from ebpftop.tui.screens.help import HelpScreen
from ebpftop.tui.screens.own_cost import OwnCostScreen

ROOT = Path(__file__).resolve().parent.parent
EBPFTOP = str(ROOT / ".venv" / "bin" / "ebpftop")


def prog(name: str, owner: str | None, pid: int = 7, **kw) -> ProgCost:
    base = dict(
        id=pid,
        name=name,
        type="tc",
        owner=owner,
        run_cnt=1000,
        run_time_ns=150_000,
        runs_per_s=1234.0,
        ns_per_run=150.0,
        cpu_percent=0.02,
    )
    return ProgCost(**(base | kw))


def selfcost_data(stats: BpfStats, programs=(), host=()) -> SelfCostData:
    return SelfCostData(
        pid=4242,
        cpu_percent=2.5,
        rss_bytes=90 << 20,
        threads=11,
        children=1,
        terminal_bps=4800.0,
        terminal_bytes=123456,
        stats=stats,
        programs=tuple(programs),
        host_programs=tuple(host),
    )


class Switched(SelfCostCollector):
    """The selfcost source with a stats switch that only remembers (no root needed),
    publishing fixed data."""

    def __init__(self, settings: Settings, data: SelfCostData) -> None:
        super().__init__(settings)
        self.fixed = data
        self.calls: list[str] = []
        self.is_on = False

    def stats_on(self) -> bool:
        self.calls.append("on")
        self.is_on = True
        return True

    def stats_off(self) -> None:
        self.calls.append("off")
        self.is_on = False

    def stats_state(self) -> BpfStats:
        return BpfStats(STATS_ON, time.time() - 5) if self.is_on else BpfStats(STATS_OFF)

    async def collect(self) -> SelfCostData:
        return self.fixed


async def wait_for(pilot, cond, what: str, bound: float = 30.0) -> None:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def switched_app(tmp_path, data: SelfCostData, **kw):
    app = make_app(tmp_path, **kw)
    fake = Switched(app.runtime.settings, data)
    app.runtime.collectors.append(fake)
    app.runtime.runners.clear()  # the test publishes; nothing samples
    return app, fake


# --- the screen ---------------------------------------------------------------------


@pytest.mark.parametrize("kiosk", [False, True])
async def test_dollar_opens_it_at_80x24_stats_on_while_open_and_off_after(tmp_path, kiosk):
    ours = [prog("ebpftop_fl_in", "flows", 11), prog("ebpftop_fl_eg", "flows", 12)]
    data = selfcost_data(BpfStats(STATS_ON, time.time()), ours, [*ours, prog("sd_fw_egress", None, 3)])
    app, fake = switched_app(tmp_path, data, kiosk=kiosk)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("dollar_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        assert fake.calls == ["on"]
        app.runtime.bus.publish(snap("selfcost", data))
        screen = app.screen
        await wait_for(pilot, lambda: "ebpftop_fl_eg" in screen.text, "the programs")
        text = screen.text
        assert "BPF stats ON while this is open" in text
        assert "ebpftop pid 4242" in text and "CPU 2.5%" in text and "RSS 90.0 MiB" in text
        assert "terminal 4.7 KiB/s written (120.6 KiB since start)" in text
        assert "flows evicted (map full) —" in text  # flows never reported: not known, not 0
        assert "ebpftop's BPF programs: 0.04% of a CPU" in text
        assert ("read-only: closes itself after 2m00s" in text) == kiosk
        # the box fits the terminal and the first lines show without scrolling
        box = screen.query_one("VerticalScroll").region
        assert box.right <= 80 and box.bottom <= 24
        shown = screen_text(app)
        assert "Own cost" in shown and "BPF stats ON while this is open" in shown
        assert "ebpftop_fl_in" in shown
        await pilot.press("dollar_sign" if kiosk else "escape")  # closes as it opened, or as any dialog
        await wait_for(pilot, lambda: not isinstance(app.screen, OwnCostScreen), "the screen to close")
        assert fake.calls == ["on", "off"]


async def test_kiosk_closes_it_by_itself_and_the_stats_go_off(tmp_path, monkeypatch):
    monkeypatch.setattr(own_cost_screen, "KIOSK_CLOSE_S", 0.5)
    app, fake = switched_app(tmp_path, selfcost_data(BpfStats(STATS_OFF)), kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("dollar_sign")
        # opened (it turns the stats on); at 0.5 s it may close before a poll would see it
        await wait_for(pilot, lambda: fake.calls[:1] == ["on"], "the own-cost screen")
        await wait_for(pilot, lambda: not isinstance(app.screen, OwnCostScreen), "the screen to close")
        assert fake.calls == ["on", "off"] and not fake.is_on


async def test_hostile_program_names_are_shown_literally(tmp_path):
    bad = [prog(HOSTILE, None, 9), prog("x" * 40 + HOSTILE, None, 10)]
    data = selfcost_data(BpfStats(STATS_ON, time.time()), [prog(HOSTILE, "flows", 8)], bad)
    data = SelfCostData(**{**data.__dict__, "stats": BpfStats(STATS_OFF, None, HOSTILE)})
    app, _fake = switched_app(tmp_path, data)
    async with app.run_test(size=(120, 40)) as pilot:
        app.runtime.bus.publish(snap("selfcost", data))
        await pilot.press("dollar_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        await wait_for(pilot, lambda: "every BPF program" in app.screen.text, "the host programs")
        text = screen_text(app)
        assert MARKUP[:15] in text  # cut to the kernel's 15 bytes, shown as typed
        assert "xxxxxxxxxxxxxx…" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))


async def test_help_lists_the_key(tmp_path):
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        line = next(row for row in app.screen.listing().splitlines() if row.startswith("$ "))
        assert "own cost" in line and "kernel BPF stats on while it is open" in line
        assert "disabled" not in line


# --- the pieces ------------------------------------------------------------------------


def test_losses_come_from_the_sources_payloads_and_unknown_is_not_zero():
    flows = FlowsData((), 0, 0, 0, None, None, 3, 2, 0, 0, 10, 4, None)
    profiles = ProfilesData(hz=49, lost_samples=5)
    got = {(x.source, x.what): x.count for x in losses(flows, profiles)}
    assert got == {
        ("flows", "flows evicted (map full)"): 3,
        ("flows", "flows not inserted"): 2,
        ("flows", "TCP events lost (ring buffer full)"): 4,
        ("profiles", "CPU samples lost"): 5,
    }
    none = own_cost(None, None, snap("profiles", {"hz": 49}))
    assert none.process is None and all(x.count is None for x in none.losses)


def test_owner_names_each_part_that_loads_programs():
    assert [owner_of(n) for n in ("ebpftop_fl_in", "sock__inet_sock", "ebpftop_rl3_eg", "ebpftop_cpu")] == [
        "flows",
        "tcp events",
        "rules",
        "profiles",
    ]


def test_process_sample_counts_children():
    c = SelfCostCollector(Settings())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        c._sample()
        d = c._sample()
    finally:
        child.kill()
        child.wait()
    assert d.pid == os.getpid() and d.children >= 1
    assert d.cpu_percent is not None and d.cpu_percent >= 0.0
    assert d.rss_bytes > 10 << 20
    assert d.terminal_bytes is None and d.terminal_bps is None  # nothing wrote through the meter
    assert d.stats.state in (STATS_OFF, "on by sysctl") and d.host_programs == ()


PTY_APP = """
import sys
from ebpftop.collectors.selfcost.collector import SelfCostCollector
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp

d = sys.argv[1]
s = Settings(audit_log=d + "/audit.jsonl", audit_key=d + "/audit.key", rules_pin_dir=d + "/no-rules")
EbpftopApp(Runtime(s, collectors=[SelfCostCollector(s)])).run()
"""
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}


def test_terminal_bytes_on_screen_are_what_the_terminal_received(tmp_path):
    """In a real pseudo-terminal: the screen's total of bytes written never exceeds what
    the terminal has read, and the rate is not zero (the dashboard keeps drawing)."""
    import re

    pytest.importorskip("pyte")
    sys.path.insert(0, str(ROOT / "bench"))
    from pty_app import PtyApp

    said = re.compile(r"terminal ([\d.]+) (B|KiB|MiB)/s written \(([\d.]+) (B|KiB|MiB) since start\)")
    script = tmp_path / "app.py"
    script.write_text(PTY_APP)
    app = PtyApp([sys.executable, str(script), str(tmp_path)], cols=80, rows=24)
    try:
        assert app.wait_for(lambda s: "? Help" in s, 60) is not None, app.text()
        os.write(app.master, b"$")
        got = app.wait_for(lambda s: (m := said.search(s)) is not None and float(m.group(1)) > 0, 60)
        assert got is not None, app.text()
        m = said.search(app.text())
        assert m is not None
        total = float(m.group(3)) * _UNITS[m.group(4)]
        assert 0 < total <= app.bytes_read * 1.01  # shown with one decimal
    finally:
        app.close()


def test_byte_meter_counts_what_the_driver_writes():
    from ebpftop.tui.terminal import count_writes

    class Driver:
        def __init__(self):
            self.out = []

        def write(self, data):
            self.out.append(data)

    d, meter = Driver(), selfcost_mod.ByteMeter()
    count_writes(d, meter)
    d.write("ab")
    d.write("─")  # three bytes in UTF-8
    assert d.out == ["ab", "─"] and meter.total == 5 and meter.attached


# --- real BPF: a veth pair in namespaces made here ----------------------------------------

PILOT_IN_NETNS = r"""
import asyncio, json, os, socket, sys, time
sys.path.insert(0, sys.argv[1])
tmp, a_if, b_ip = sys.argv[2], sys.argv[3], sys.argv[4]
from test_own_cost import stats_holders
from ebpftop.collectors import bpfsys
from ebpftop.collectors.flows.collector import FlowsCollector
from ebpftop.collectors.selfcost.collector import SelfCostCollector
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.screens.own_cost import OwnCostScreen

settings = Settings(audit_log=tmp + "/audit.jsonl", audit_key=tmp + "/audit.key",
                    rules_pin_dir=tmp + "/no-rules")
app = EbpftopApp(Runtime(settings, [FlowsCollector([a_if]), SelfCostCollector(settings)]))
out = {}

async def until(pilot, cond, what):
    end = time.monotonic() + 120  # bounded by time: a loaded machine stretches each pause
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if cond():
            return
    raise SystemExit(f"gave up waiting for {what}")

def shown(name):
    # the program as the open screen last drew it
    cost = app.screen.cost if isinstance(app.screen, OwnCostScreen) else None
    progs = cost.process.programs if cost is not None and cost.process is not None else ()
    return next((p for p in progs if p.name == name), None)

def flows_packets():
    snap = app.runtime.store.latest("flows")
    return snap.data.total_packets if snap is not None and snap.data is not None else -1

def send(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(n):
        s.sendto(b"x" * 10, (b_ip, 9))
    s.close()

async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: flows_packets() >= 0, "the flows datapath")
        out["holders_before"] = stats_holders()
        await pilot.press("dollar_sign")
        await until(pilot, lambda: isinstance(app.screen, OwnCostScreen), "the own-cost screen")
        screen = app.screen
        out["holders_open"] = stats_holders()
        await until(pilot, lambda: shown("ebpftop_fl_eg") is not None, "the flows program on the screen")
        first = shown("ebpftop_fl_eg")
        send(50)
        await until(pilot, lambda: shown("ebpftop_fl_eg").run_cnt >= first.run_cnt + 50, "50 runs counted")
        eg = shown("ebpftop_fl_eg")
        out["eg"] = [eg.id, eg.owner, eg.type, eg.run_cnt - first.run_cnt, eg.ns_per_run]
        out["owners"] = sorted({p.owner for p in screen.cost.process.programs})
        out["row"] = next(line for line in screen.text.splitlines() if "ebpftop_fl_eg" in line)
        out["says"] = [line for line in screen.text.splitlines() if "BPF stats" in line]
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, OwnCostScreen), "the screen to close")
        out["holders_closed"] = stats_holders()
        before, packets = bpfsys.prog_info_by_id(eg.id).run_cnt, flows_packets()
        send(50)
        await until(pilot, lambda: flows_packets() >= packets + 50, "the flows source counting 50 more")
        out["runs_after_close"] = bpfsys.prog_info_by_id(eg.id).run_cnt - before
        out["holders_after"] = stats_holders()

asyncio.run(main())
print(json.dumps(out))
"""


def stats_holders() -> dict[str, object]:
    """Who keeps the kernel's BPF run-time stats on: processes holding a BPF_ENABLE_STATS
    fd (anon_inode:bpf-stats), and the sysctl."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf-stats":
                    pids.append(int(pid))
                    break
            except OSError:
                continue
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    return {"pids": pids, "self": os.getpid(), "sysctl": sysctl}


def _others(holders: dict) -> bool:
    return holders["sysctl"] != "0" or any(p != holders["self"] for p in holders["pids"])


@pytest.mark.root
@pytest.mark.integration
def test_real_flows_program_counted_while_open_and_not_after(tmp_path):
    """In namespace A of a veth pair made here, the dashboard runs the flows source on
    A's veth: `$` lists the flows TC programs as ebpftop's, 50 datagrams sent make the
    egress program's run count grow by at least 50 with a run time per packet; after
    Esc this process holds no stats fd and the next 50 packets (counted by the flows
    source) leave the run count where it was."""
    from conftest import need_root
    from netns import PYTHON, veth_pair

    need_root()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_") and k != "CI"}
    with veth_pair("ebsc") as net:
        p = subprocess.run(
            [
                *("nsenter", f"--net=/run/netns/{net.a.name}", PYTHON, "-c", PILOT_IN_NETNS),
                *(str(Path(__file__).parent), str(tmp_path), net.a_if, net.b_ip4),
            ],
            capture_output=True,
            text=True,
            timeout=400,
            env=env,
        )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    _id, owner, kind, runs, ns_per_run = out["eg"]
    assert owner == "flows" and kind == "tc" and runs >= 50
    assert ns_per_run is not None and 0 < ns_per_run < 1_000_000  # under a millisecond a packet
    assert {"flows", "tcp events"} <= set(out["owners"])
    assert "ebpftop_fl_eg" in out["row"] and f"{ns_per_run:.0f}" in out["row"]
    assert out["says"][0].startswith("BPF stats ON while this is open")
    me = out["holders_open"]["self"]
    assert me in out["holders_open"]["pids"] and me not in out["holders_closed"]["pids"]
    if _others(out["holders_before"]) or _others(out["holders_after"]):
        pytest.skip(f"someone else keeps BPF stats on ({out['holders_after']}): run counts keep growing")
    assert out["runs_after_close"] == 0


def _snapshot_in(ns, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBPFTOP_")}
    p = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns.name}", EBPFTOP, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.mark.root
@pytest.mark.integration
def test_snapshot_json_carries_own_cost_and_bpf_stats_only_when_asked(tmp_path):
    from conftest import need_root
    from netns import veth_pair

    need_root()
    sender = "import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    sender += "while True:\n    s.sendto(b'x', (sys.argv[1], 9)); time.sleep(0.002)\n"
    with veth_pair("ebsc") as net:
        net.a.python(sender, net.b_ip4)
        common = ["--iface", net.a_if, "snapshot", "--json", "--source", "flows", "--source", "selfcost"]
        on = _snapshot_in(net.a, *common, "--duration", "5", "--bpf-stats")
        off = _snapshot_in(net.a, *common, "--duration", "2")
    cost = on["own_cost"]
    proc = cost["process"]
    assert proc["pid"] > 1 and proc["threads"] >= 1
    assert 0.0 <= proc["cpu_percent"] <= 100.0 * (os.cpu_count() or 1)
    assert 20 << 20 < proc["rss_bytes"] < 4 << 30
    assert proc["terminal_bytes"] is None  # no terminal: not 0
    assert proc["stats"]["state"] == "on" and proc["stats"]["since"] <= on["time"]
    eg = next(p for p in proc["programs"] if p["name"] == "ebpftop_fl_eg")
    assert eg["owner"] == "flows" and eg["run_cnt"] > 0
    # A rate needs two samples of the program: when its compile ends near the end of the
    # snapshot (a loaded machine), the last sample is its first and says unknown, not 0.
    # The screen's test above checks the rate itself on a program that has run a while.
    if eg["runs_per_s"] is None:
        assert eg["ns_per_run"] is None
    else:
        assert eg["runs_per_s"] > 0 and 0 < eg["ns_per_run"] < 1_000_000
    assert eg["id"] in {p["id"] for p in proc["host_programs"]}
    assert {(x["source"], x["what"]) for x in cost["losses"]} >= {("flows", "flows evicted (map full)")}
    assert all(isinstance(x["count"], int) for x in cost["losses"] if x["source"] == "flows")
    assert on["sources"]["selfcost"]["data"]["pid"] == proc["pid"]
    quiet = off["own_cost"]["process"]
    assert quiet["stats"]["state"] in ("off", "on by sysctl") and quiet["stats"]["since"] is None
    if quiet["stats"]["state"] == "off":
        assert quiet["host_programs"] == []


def _load_socket_filter(name: str) -> int:
    """A two-instruction program (return 0) loaded with bpf(BPF_PROG_LOAD): a stand-in for
    a program some other ebpftop pinned."""
    import ctypes

    from ebpftop.collectors.bpfsys import bpf

    insns = ctypes.create_string_buffer(b"\xb7" + b"\0" * 7 + b"\x95" + b"\0" * 7, 16)
    gpl = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    attr[0:4] = (1).to_bytes(4, "little")  # BPF_PROG_TYPE_SOCKET_FILTER
    attr[4:8] = (2).to_bytes(4, "little")
    attr[8:16] = ctypes.addressof(insns).to_bytes(8, "little")
    attr[16:24] = ctypes.addressof(gpl).to_bytes(8, "little")
    attr[48 : 48 + len(name)] = name.encode()
    return bpf(5, attr)  # BPF_PROG_LOAD


@pytest.mark.root
def test_pinned_rules_programs_count_as_ebpftops_without_being_held(tmp_path):
    import secrets
    import shutil

    from conftest import need_root

    from ebpftop.collectors.bpfsys import prog_info
    from ebpftop.collectors.rules.bpfsys import obj_pin
    from ebpftop.collectors.selfcost.programs import held_prog_ids, own_programs

    need_root()
    base = f"/sys/fs/bpf/ebpftop-test-{secrets.token_hex(4)}"
    pin_dir = f"{base}/rules"
    os.makedirs(pin_dir)
    try:
        fd = _load_socket_filter("ebpftop_rl_in")
        mine = prog_info(fd).id  # this process may hold other rules programs (earlier tests)
        obj_pin(fd, f"{pin_dir}/prog_ebpftop_rl_in")
        held = own_programs(pin_dir)
        os.close(fd)  # now only the pin keeps it
        pinned = [(info.name, owner) for info, owner in own_programs(pin_dir) if info.id == mine]
        assert pinned == [("ebpftop_rl_in", "rules (pinned)")]
        assert [owner for info, owner in held if info.id == mine] == ["rules"]  # held: by name
        assert mine not in held_prog_ids()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_replay_says_the_stats_as_recorded_and_switches_nothing():
    from ebpftop.tui.screens.own_cost_view import own_cost_lines

    data = selfcost_data(BpfStats(STATS_ON, 1.0), [prog("ebpftop_fl_in", "flows")])
    cost = own_cost(snap("selfcost", data), None, None)
    lines = own_cost_lines(cost, None, read_only=True, close_after=120)
    text = ["".join(part if isinstance(part, str) else part[0] for part in line) for line in lines]
    assert "BPF stats as recorded: on" in text
    assert not any("closes itself" in line for line in text)  # nothing is on: nothing to time out


def test_stats_that_cannot_be_turned_on_say_why(monkeypatch):
    import errno

    from ebpftop.collectors.bpfsys import BpfError

    def refuse() -> int:
        raise BpfError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(selfcost_mod, "enable_stats", refuse)
    c = SelfCostCollector(Settings())
    assert c.stats_on() is False
    state = c.stats_state()
    assert state.since is None and state.error == "cannot turn BPF stats on: Operation not permitted"
    assert state.state in (STATS_OFF, "on by sysctl")
