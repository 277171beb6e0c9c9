"""The real app in a real pseudo-terminal: the screen reaches the terminal even while
another part of the process points fd 2 elsewhere (as the flows collector does while
bcc compiles); mouse presses on a toast as it goes away do not crash it."""

from __future__ import annotations

import os
import pathlib
import sys
import textwrap
import time

import pytest
from app_support import make_app
from textual import events

pyte = pytest.importorskip("pyte")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
from pty_app import PtyApp  # noqa: E402  (the benchmarks' PTY + terminal emulator helper)

DEMO = pathlib.Path(__file__).resolve().parent / "data" / "demo.rec"

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ebpftop.core.collector import Collector
    from ebpftop.core.runtime import Runtime
    from ebpftop.core.settings import Settings
    from ebpftop.tui.app import EbpftopApp

    class Noisy(Collector):
        name = "rules"
        async def collect(self):
            import logging
            logging.getLogger("noisy").warning("WARNED-%s", "ONCE")
            from ebpftop.collectors.rules.model import RulesData
            return RulesData((), 0, (), 1, 256)

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
        assert app.wait_for(lambda s: "0/256 rules" in s and "? Help" in s, 30) is not None, app.text()
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


# --- a press on a toast that is going away (issue 16, item 2) ------------------------------
# Textual 8.2.8 keeps a widget that has just left the DOM in the screen's compositor map
# until the next layout; a press landing on it there crashed the app (AttributeError:
# 'NoneType' object has no attribute 'region'; Textualize/textual#6643). EbpftopApp.on_event
# makes such a press a miss.


async def test_a_press_on_a_toast_that_has_just_left_the_dom_is_a_miss(tmp_path):
    import asyncio

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        for attempt in range(3):
            app.notify(f"toast {attempt}", title="incident marker", timeout=30)
            await pilot.pause()
            toast = app.screen.query_one("Toast")
            at = toast.region.offset  # its top-left cell: padding, where a press starts a selection
            toast.parent.remove()  # what its timer (or a click on it) does
            for _ in range(100):
                if toast.parent is None:
                    break
                await asyncio.sleep(0)  # let the removal run, but not the screen's next layout
            # The window the crash needs: out of the DOM, still what the screen finds there.
            assert toast.parent is None and app.screen.get_widget_at(*at)[0] is toast
            app.post_message(
                events.MouseDown(None, at.x, at.y, 0, 0, 1, False, False, False, screen_x=at.x, screen_y=at.y)
            )
            await pilot.pause()
            assert app.is_running and app.return_code is None
        # Presses elsewhere still do what they did: a click on a pane focuses it.
        await pilot.click("#pane-canary")
        assert app.focused is app.query_one("#pane-canary")


def test_presses_on_a_vanishing_toast_in_a_real_terminal(tmp_path):
    """As found: presses written into the pty over a toast as it goes (a click takes it
    away at once, the presses queued behind it land on it). Without the guard the app
    died within a few rounds; each round here is one chance."""
    app = PtyApp(
        [sys.executable, "-m", "ebpftop.cli.main", "replay", "--paused", str(DEMO)], cols=80, rows=24
    )
    try:
        assert app.wait_for(lambda s: "? Help" in s, 30) is not None, app.text()
        for _ in range(10):
            os.write(app.master, b"T")  # next theme: a 2-s toast "theme: <name>"
            assert app.wait_for(lambda s: "theme:" in s, 10) is not None, app.text()
            lines = app.screen.display
            y = next(i for i, line in enumerate(lines) if "theme:" in line)
            x = lines[y].index("theme:")
            # SGR mouse reports are 1-based: x + 1 is the toast's text; x - 2 .. x its border and padding.
            click = f"\x1b[<0;{x + 1};{y + 1}M\x1b[<0;{x + 1};{y + 1}m"
            presses = "".join(f"\x1b[<0;{cx};{cy}M" for cy in range(y, y + 3) for cx in range(x - 2, x + 3))
            os.write(app.master, (click + presses * 20).encode())
            app.wait_for(lambda s: "theme:" not in s, 10)
            app.pump(0.2)
            assert app.proc.poll() is None, app.text()
        assert quit_with_q(app) == 0
    finally:
        app.close()
