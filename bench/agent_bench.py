"""One collection, many viewers: what `ebpftop agent` saves, measured.

In a pair of namespaces made here (three TCP connections across a veth), with the
agent collecting inside one of them:
- CPU (agent + viewers, each viewer a real `ebpftop --connect` in a pty at 160x48) with
  1 and with 5 viewers, the agent serving plain NDJSON (`--no-deflate`) and deflate (its
  default; the viewers accept it), against 5 dashboards each collecting itself
  (`--no-agent`);
- BPF programs held, counted by the kernel's own list (`bpftool prog show`) over the
  ids the processes hold (/proc/PID/fdinfo);
- stream bytes/s one viewer receives at the default 1 Hz, plain and deflate: two raw
  readers of the socket over the same seconds, one asking nothing, one asking deflate
  (its bytes inflated here, frame by frame, to check they read back);
- SIGKILL of the agent to "AGENT DOWN" on a viewer's screen, median of 3.

Writes "## agent: one collection, many viewers" to bench/RESULTS.md. Root. Other people's
tests may run at the same time: the load average is reported with the figures.
`--bytes` measures the stream's bytes only (not sensitive to load) and keeps the CPU
table of the section already there, saying from when it is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import veth_pair  # noqa: E402
from pty_app import VENV_BIN, PtyApp  # noqa: E402
from results import RESULTS, machine, write_section  # noqa: E402

from ebpftop.core.stream import Inflater, hello_line, parse_frame, switch_line  # noqa: E402

EBPFTOP = str(VENV_BIN / "ebpftop")
COLS, ROWS = 160, 48
WINDOW = 20.0  # seconds of CPU measured per case
SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7070)); s.listen(16)
def serve(c):
    while c.recv(65536): pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = """
import socket, sys, time
conns = [socket.create_connection((sys.argv[1], 7070)) for _ in range(3)]
while True:
    for c in conns: c.sendall(b"x" * 2000)
    time.sleep(0.1)
"""


def held(pid: int) -> set[int]:
    """The BPF programs process `pid` holds (directly or through a link)."""
    from ebpftop.collectors.selfcost.programs import held_prog_ids

    return held_prog_ids(f"/proc/{pid}/fd")


def bpftool_names(ids: set[int]) -> list[str]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    return sorted(p.get("name", "?") for p in json.loads(out.stdout) if p["id"] in ids)


def cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for q in procs:
            try:
                t = q.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def measure(pids: list[int], apps: list[PtyApp], seconds: float) -> float:
    """CPU % of `pids` (and their children) over `seconds`, the ptys drained meanwhile."""
    c0, t0 = cpu(pids), time.monotonic()
    while time.monotonic() - t0 < seconds:
        for app in apps:
            app.pump(0.02, render=False)
    return 100.0 * (cpu(pids) - c0) / (time.monotonic() - t0)


def wait_all(apps: list[PtyApp], needle: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for app in apps:
            app.pump(0.05)
        if all(needle in app.text() for app in apps):
            return True
    return False


class Reader(threading.Thread):
    """A raw reader of the socket: bytes on the wire and frames read, over a window that
    starts once the history has come (it comes first, at once)."""

    def __init__(self, sock: str, deflate: bool, start: threading.Barrier, seconds: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.deflate, self.start_at, self.seconds = sock, deflate, start, seconds
        self.wire = self.inflated = self.frames = 0
        self.problem = ""

    def run(self) -> None:
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.settimeout(2)
        if self.deflate:
            s.sendall(hello_line(None, ("deflate",)))
        buf, inf = b"", None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            try:
                buf += s.recv(1 << 20)
            except TimeoutError:
                break
        if self.deflate:
            if switch_line("deflate") not in buf:
                self.problem = "the agent never switched to deflate"
                return
            inf = Inflater()
            inf.feed(buf.partition(switch_line("deflate"))[2], 0)
        else:
            buf = buf.rpartition(b"\n")[2]
        self.start_at.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.seconds:
            try:
                chunk = s.recv(1 << 20)
            except TimeoutError:
                continue
            self.wire += len(chunk)
            if inf is not None:
                lines = inf.feed(chunk, 0)
            else:
                *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                self.inflated += len(line) + (inf is None)
                parse_frame(line, 0)  # reads back, or raises
                self.frames += 1
        s.close()


def stream_rates(sock: str, seconds: float) -> tuple[Reader, Reader]:
    """A plain and a deflate reader over the same seconds."""
    barrier = threading.Barrier(2)
    readers = (Reader(sock, False, barrier, seconds), Reader(sock, True, barrier, seconds))
    for r in readers:
        r.start()
    for r in readers:
        r.join(seconds + 30)
        if r.problem:
            raise SystemExit(f"agent_bench: {r.problem}")
    return readers


def bytes_lines(plain: Reader, deflate: Reader, seconds: float) -> list[str]:
    return [
        f"Stream to one viewer at 1 Hz, two raw readers of the socket over the same {seconds:g} s after "
        "the history:",
        "",
        "| encoding | KiB/s on the wire | frames/s | inflated KiB/s |",
        "|---|---|---|---|",
        f"| plain NDJSON (a reader that asks nothing) | {plain.wire / seconds / 1024:.1f} | "
        f"{plain.frames / seconds:.1f} | {plain.inflated / seconds / 1024:.1f} |",
        f'| deflate (hello `{{"accept": ["deflate"]}}`) | {deflate.wire / seconds / 1024:.1f} | '
        f"{deflate.frames / seconds:.1f} | {deflate.inflated / seconds / 1024:.1f} |",
        "",
        f"Deflate: {plain.wire / max(deflate.wire, 1):.1f}x fewer bytes (each frame read back through "
        "`Inflater` and `parse_frame`).",
    ]


BYTES_S = 20.0
MODES = {"plain": ("--no-deflate",), "deflate": ()}  # the agent's flags; viewers always accept deflate


def old_cpu(section: str) -> str:
    """The CPU table and SIGKILL line of the section in RESULTS.md now, with its machine line."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    body = m.group(1) if m else ""
    when = re.search(r"^Machine: .*?UTC", body, re.M)
    table = [line for line in body.splitlines() if line.startswith("|")][:7]
    table = [line for line in table if not line.startswith("| encoding") and "KiB/s" not in line]
    kill = re.search(r"^SIGKILL of the agent.*$", body, re.M)
    if not table or not when:
        return "CPU: not measured in this run (`--bytes`); run the bench without it."
    return "\n".join(
        [
            f"CPU and SIGKILL, carried over from the last full run ({when.group(0)[9:]}; this run, "
            "`--bytes`, measured bytes only; rows that name no encoding predate deflate):",
            "",
            *table,
            *(["", kill.group(0)] if kill else []),
        ]
    )


def main() -> int:
    if os.geteuid() != 0:
        print("agent_bench: needs root", file=sys.stderr)
        return 2
    only_bytes = "--bytes" in sys.argv[1:]
    section = "agent: one collection, many viewers"
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-agent-bench-"))
    (tmp / "pins").mkdir()
    config = tmp / "config.toml"
    config.write_text(
        f'[audit]\nlog = "{tmp}/audit.jsonl"\nkey = "{tmp}/audit.key"\n[rules]\npin_dir = "{tmp}/pins"\n'
    )
    sock = str(tmp / "run" / "agent.sock")
    rows: list[str] = []
    facts: dict[str, object] = {}
    with veth_pair("ebab") as net:
        net.b.python(SERVER, net.b_ip4)
        time.sleep(0.5)
        net.a.python(CLIENT, net.b_ip4)

        def agent(*flags: str) -> subprocess.Popen:
            return net.a.popen(
                EBPFTOP, "--config", str(config), "--iface", net.a_if, "agent", "--socket", sock, *flags,
                bpf=True, stdout=subprocess.DEVNULL, stderr=open(tmp / "agent.log", "a"),
            )  # fmt: skip

        def settled(ag: subprocess.Popen) -> None:
            deadline = time.monotonic() + 180
            while not held(ag.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(5)  # past the start: compiling is not the steady cost

        def viewers(n: int) -> list[PtyApp]:
            apps = [
                PtyApp([EBPFTOP, "--config", str(config), "--connect", sock], COLS, ROWS) for _ in range(n)
            ]
            if not wait_all(apps, "via agent", 120):
                raise SystemExit("agent_bench: a viewer never showed 'via agent'")
            return apps

        ag = agent()
        settled(ag)
        facts["rates"] = stream_rates(sock, BYTES_S)
        ag.send_signal(signal.SIGTERM)
        ag.wait(30)
        for mode, flags in ({} if only_bytes else MODES).items():
            ag = agent(*flags)
            settled(ag)
            for n in (1, 5):
                apps = viewers(n)
                time.sleep(3)
                pct_agent = measure([ag.pid], apps, WINDOW / 2)
                pct_all = measure([ag.pid, *(a.proc.pid for a in apps)], apps, WINDOW)
                progs = held(ag.pid).union(*(held(p.pid) for a in apps for p in a.tree()))
                case = f"agent ({mode}) + {n} viewer{'s' if n > 1 else ''}"
                rows.append(
                    f"| {case} | {pct_all:.1f} | {pct_agent:.1f} | "
                    f"{len(progs)} ({', '.join(bpftool_names(progs))}) |"
                )
                if n == 1 and mode == "deflate":
                    downs = []
                    for _ in range(3):
                        ag.send_signal(signal.SIGKILL)
                        t0 = time.monotonic()
                        ag.wait(10)
                        ok = wait_all(apps, "AGENT DOWN", 30)
                        downs.append(time.monotonic() - t0 if ok else float("inf"))
                        ag = agent(*flags)
                        wait_all(apps, "via agent", 120)
                    facts["down_s"] = downs
                    settled(ag)  # the next case measures the steady cost, not a start's compiling
                for a in apps:
                    a.close()
            ag.send_signal(signal.SIGTERM)
            ag.wait(30)
        if not only_bytes:
            apps = [
                PtyApp(
                    net.a.cmd(EBPFTOP, "--config", str(config), "--iface", net.a_if, "--no-agent", bpf=True),
                    COLS,
                    ROWS,
                )
                for _ in range(5)
            ]
            wait_all(apps, "Flows", 120)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not all(held(a.proc.pid) for a in apps):
                for a in apps:
                    a.pump(0.05, render=False)
            for _ in range(50):
                for a in apps:
                    a.pump(0.1, render=False)  # past the starts
            pct = measure([a.proc.pid for a in apps], apps, WINDOW)
            progs = set().union(*(held(p.pid) for a in apps for p in a.tree()))
            names = bpftool_names(progs)
            rows.append(
                f"| 5 dashboards collecting | {pct:.1f} | — | {len(progs)} ({len(set(names))} kinds) |"
            )
            for a in apps:
                a.close()
    load1 = os.getloadavg()
    plain, deflate = facts["rates"]  # type: ignore[misc]
    head = [
        f"Machine: {machine()}. Load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end"
        + (
            ": other work ran on the same 2 CPUs meanwhile, so CPU figures are noisy."
            if max(load0[0], load1[0]) > 1.5
            else " (nothing else running)."
        ),
        "",
    ]
    if only_bytes:
        cpu_part = [old_cpu(section)]
    else:
        downs = facts["down_s"]
        assert isinstance(downs, list)
        cpu_part = [
            f"CPU % over {WINDOW:g} s (one CPU = 100), in a namespace with three TCP connections; "
            "viewers are `ebpftop --connect` in ptys at 160x48 (they accept deflate; the agent sends it "
            "unless `--no-deflate`); programs are the BPF programs the processes hold (/proc fdinfo ids, "
            "named by `bpftool prog show`).",
            "",
            "| case | CPU % (all) | CPU % (agent alone) | BPF programs held |",
            "|---|---|---|---|",
            *rows,
            "",
            "SIGKILL of the agent to AGENT DOWN on the viewer's screen: "
            f"median {statistics.median(downs):.2f} s (runs: {', '.join(f'{d:.2f}' for d in downs)}).",
        ]
    body = "\n".join([*head, *cpu_part, "", *bytes_lines(plain, deflate, BYTES_S)])
    write_section(section, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
