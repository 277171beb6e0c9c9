"""SIGTERM, SIGHUP (an SSH drop) and SIGINT end the dashboard as `q` does, in a real
pseudo-terminal: the terminal is restored (alternate screen left, mouse reporting off,
cursor shown), the collectors are closed, and the exit status is 128 + the signal
(143, 129, 130). A terminal that hangs up ends it as SIGHUP would, and a second signal
forces an exit that is stuck (ebpftop.tui.terminal)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("pyte")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
from pty_app import PtyApp

DEMO = pathlib.Path(__file__).resolve().parent / "data" / "demo.rec"
CLI = [sys.executable, "-m", "ebpftop.cli.main"]
# What Textual's application mode turned on and a restored terminal has turned off again.
RESTORED = {
    "alternate screen left": b"\x1b[?1049l",
    "mouse reporting off": b"\x1b[?1000l",
    "mouse motion off": b"\x1b[?1003l",
    "SGR mouse off": b"\x1b[?1006l",
    "cursor shown": b"\x1b[?25h",
}

# A dashboard whose one collector says on disk when it was closed, and (with "stuck")
# never finishes closing.
SCRIPT = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from ebpftop.core.collector import Collector
    from ebpftop.core.runtime import Runtime
    from ebpftop.core.settings import Settings
    from ebpftop.tui.app import EbpftopApp

    d = pathlib.Path(sys.argv[1])

    class Held(Collector):
        name = "rules"
        async def collect(self):
            from ebpftop.collectors.rules.model import RulesData
            return RulesData((), 0, (), 1, 256)
        async def close(self):
            (d / "closing").write_text("")
            if sys.argv[2] == "stuck":
                await asyncio.Event().wait()
            (d / "closed").write_text("")

    s = Settings(audit_log=str(d / "audit.jsonl"), audit_key=str(d / "audit.key"))
    app = EbpftopApp(Runtime(s, collectors=[Held()]))
    app.run()
    sys.exit(app.return_code or 0)
    """
)


class Recorded(PtyApp):
    """A PtyApp that keeps every byte the app wrote."""

    def __init__(self, argv: list[str], **kw) -> None:
        super().__init__(argv, **kw)
        self.raw = bytearray()
        feed = self.stream.feed
        self.stream.feed = lambda data: (self.raw.extend(data), feed(data))

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)
        self.pump(0.3)  # whatever it wrote last
        return self.proc.poll()


def started(tmp_path, mode: str) -> Recorded:
    """SCRIPT's dashboard, up and showing its collector's data."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = Recorded([sys.executable, str(script), str(tmp_path), mode], cols=160, rows=40)
    if app.wait_for(lambda s: "0/256 rules" in s and "? Help" in s, 30) is None:
        app.close()
        raise AssertionError(app.text())
    return app


def assert_restored(written: bytes) -> None:
    missing = [what for what, seq in RESTORED.items() if seq not in written]
    assert not missing, (missing, written[-600:])
    # Left in that order: nothing turns the alternate screen back on after it was left.
    assert b"\x1b[?1049h" not in written.split(b"\x1b[?1049l")[-1]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signal_restores_the_terminal_and_exits_with_128_plus_signo(sig, code):
    app = Recorded([*CLI, "replay", str(DEMO)], cols=80, rows=24)
    try:
        assert app.wait_for(lambda s: "? Help" in s, 30) is not None, app.text()
        before = len(app.raw)
        app.proc.send_signal(sig)
        assert app.wait_exit(30) == code, app.text()
        assert_restored(bytes(app.raw[before:]))
    finally:
        app.close()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_closes_the_collectors_before_exiting(tmp_path, sig, code):
    app = started(tmp_path, "normal")
    try:
        app.proc.send_signal(sig)
        assert app.wait_exit(30) == code, app.text()
        assert (tmp_path / "closed").exists()
    finally:
        app.close()


@pytest.mark.parametrize("with_signal", [True, False], ids=["SIGHUP", "hang-up only"])
def test_a_terminal_that_hangs_up_ends_the_dashboard(tmp_path, with_signal):
    """An SSH drop: the terminal goes away (and SIGHUP comes, or not: this pty is not the
    process's controlling terminal). Nothing can be written any more; the dashboard still
    closes its collectors and ends with 129, not a traceback's 1 or 120, and does not
    stay behind spinning on a dead terminal."""
    app = started(tmp_path, "normal")
    try:
        os.close(app.master)
        app.master = os.open(os.devnull, os.O_RDONLY)  # for close()
        if with_signal:
            app.proc.send_signal(signal.SIGHUP)
        try:
            code = app.proc.wait(30)  # hang-safety bound, not a speed claim
        except subprocess.TimeoutExpired:
            code = None
        assert code == 129
        assert (tmp_path / "closed").exists()
    finally:
        app.close()


def test_a_second_signal_forces_an_exit_that_is_stuck(tmp_path):
    app = started(tmp_path, "stuck")
    try:
        before = len(app.raw)
        app.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not (tmp_path / "closing").exists() and time.monotonic() < deadline:
            app.pump(0.1)
        assert (tmp_path / "closing").exists() and app.proc.poll() is None  # stuck in its shutdown
        app.proc.send_signal(signal.SIGTERM)
        assert app.wait_exit(30) == 143
        assert not (tmp_path / "closed").exists()
        assert_restored(bytes(app.raw[before:]))
    finally:
        app.close()


# --- live, as root: the BPF programs and links go with it ----------------------------------


def _held_prog_ids(pid: int) -> set[int]:
    """BPF program ids held by process `pid` and its children (the flows agent)."""
    import psutil

    ids = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{proc.pid}/fdinfo/{fd}") as f:
                    ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
            except OSError:
                continue
    return ids


def _loaded(ids: set[int]) -> set[int]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    return ids & {p["id"] for p in json.loads(out.stdout)}


@pytest.mark.root
@pytest.mark.integration
def test_sigterm_on_the_live_dashboard_detaches_its_bpf(tmp_path):
    from conftest import need_root

    from ebpftop.collectors.flows import tcx

    need_root()
    env = {
        "EBPFTOP_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "EBPFTOP_AUDIT_KEY": str(tmp_path / "audit.key"),
    }
    app = Recorded([*CLI, "--iface", "lo"], cols=160, rows=48, env=env)
    try:
        up = app.wait_for(lambda s: "1 Flows" in s and "● OK" in s.split("1 Flows", 1)[1][:300], 120)
        assert up is not None, app.text()
        deadline = time.monotonic() + 60  # the pane says OK before the agent holds its programs
        ids: set[int] = set()
        links: list = []
        while not links and time.monotonic() < deadline:
            app.pump(0.2)
            ids = _held_prog_ids(app.proc.pid)
            links = [link for link in tcx.tcx_links("ebpftop_fl") if link.prog_id in ids]
        assert ids and links, (ids, links)  # attached: something to detach
        before = len(app.raw)
        app.proc.send_signal(signal.SIGTERM)
        assert app.wait_exit(60) == 143, app.text()
        assert_restored(bytes(app.raw[before:]))
        deadline = time.monotonic() + 20  # the kernel frees programs after an RCU grace period
        while (
            _loaded(ids) or [lk for lk in tcx.tcx_links("ebpftop_fl") if lk.prog_id in ids]
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _loaded(ids)
        assert not [link for link in tcx.tcx_links("ebpftop_fl") if link.prog_id in ids]
    finally:
        app.close()
