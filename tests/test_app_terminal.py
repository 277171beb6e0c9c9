"""The real app in a real pseudo-terminal: the screen reaches the terminal even while
another part of the process points fd 2 elsewhere (as the flows collector does while
bcc compiles)."""

from __future__ import annotations

import os
import pathlib
import sys
import textwrap
import time

import pytest

pyte = pytest.importorskip("pyte")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
from pty_app import PtyApp  # noqa: E402  (the benchmarks' PTY + terminal emulator helper)

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ebpftop.collectors.base import Collector
    from ebpftop.collectors.runtime import Runtime
    from ebpftop.collectors.settings import Settings
    from ebpftop.tui.app import EbpftopApp

    class Noisy(Collector):
        name = "rules"
        async def collect(self):
            import logging
            logging.getLogger("noisy").warning("WARNED-%s", "ONCE")
            return {"noisy": "yes"}

    class StealsFd2(Collector):
        name = "flows"
        async def start(self):
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        async def collect(self):
            from ebpftop.collectors.flows.model import FlowRecord, FlowsData
            f = FlowRecord("lo", "egress", "tcp", "127.0.0.1", 1, "127.0.0.1", 2, 1, 1, None, None, 0.0, 0.0,
                           pid=1, comm="fd2-redirected")
            return FlowsData((f,), 1, 1, 1, None, None, 0, 0, 0, 0, None, None, None)
        async def close(self):
            if getattr(self, "saved", None) is not None:
                os.dup2(self.saved, 2)
                os.close(self.saved)
                self.saved = None

    d = sys.argv[1]
    s = Settings(audit_log=d + "/audit.jsonl", audit_key=d + "/audit.key")
    collectors = [StealsFd2()] if sys.argv[2] == "steal" else [Noisy()]
    EbpftopApp(Runtime(s, collectors=collectors)).run()
    """
)


def quit_with_q(app: PtyApp) -> int | None:
    """Press q; the exit code once the app has ended (None if it is still running)."""
    os.write(app.master, b"q")
    deadline = time.monotonic() + 30
    while app.proc.poll() is None and time.monotonic() < deadline:
        app.pump(0.1)
    return app.proc.poll()


def test_screen_survives_fd2_being_redirected(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = PtyApp([sys.executable, str(script), str(tmp_path), "steal"], cols=100, rows=30)
    try:
        # Drawn after the collector took fd 2: the flows pane's data and the footer.
        shown = app.wait_for(lambda s: "fd2-redirected" in s and "? Help" in s, 30)
        assert shown is not None, app.text()
        assert quit_with_q(app) == 0
    finally:
        app.close()


def test_log_warnings_stay_off_the_screen_and_are_reported_after(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = PtyApp([sys.executable, str(script), str(tmp_path), "noisy"], cols=160, rows=40)
    raw = bytearray()
    feed = app.stream.feed
    app.stream.feed = lambda data: (raw.extend(data), feed(data))
    try:
        assert app.wait_for(lambda s: "noisy: yes" in s and "? Help" in s, 30) is not None, app.text()
        assert b"WARNED-ONCE" not in raw  # nothing written over the dashboard...
        os.write(app.master, b"q")
        deadline = time.monotonic() + 30
        while app.proc.poll() is None and time.monotonic() < deadline:
            app.pump(0.1)
        app.pump(0.5)
        assert app.proc.poll() == 0
        after = raw.decode("utf-8", "replace")  # ...and not lost either: told after exit
        assert "warning(s) were logged while the dashboard ran" in after
        assert "WARNING noisy: WARNED-ONCE" in after
    finally:
        app.close()


def test_keys_reach_the_app_without_a_polling_input_thread(tmp_path):
    """The input thread blocks until a key (ebpftop.tui.terminal): a key still arrives,
    a lone ESC still resolves through the escape timeout, and quit still wakes it."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = PtyApp([sys.executable, str(script), str(tmp_path), "steal"], cols=100, rows=30)
    try:
        assert app.wait_for(lambda s: "fd2-redirected" in s and "? Help" in s, 30) is not None, app.text()
        os.write(app.master, b"?")
        assert app.wait_for(lambda s: "esc closes" in s, 10) is not None, app.text()
        os.write(app.master, b"\x1b")  # nothing follows: only the timeout makes it a key
        assert app.wait_for(lambda s: "esc closes" not in s, 10) is not None, app.text()
        assert quit_with_q(app) == 0
    finally:
        app.close()
