"""Helpers for the app tests: a Runtime with no live collectors, fixed data, a frozen
clock, and ways to read what the app put on the screen (text and terminal bytes)."""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import replace

from rich.console import Console

from ebpftop.collectors.rules.model import RuleRecord, RulesData
from ebpftop.core.model import Health, HealthState, HostData, Snapshot
from ebpftop.core.runtime import Runtime
from ebpftop.core.settings import Settings
from ebpftop.tui.app import EbpftopApp

T0 = 1_700_000_000.0  # the frozen "now" of these tests is T0 + 3
NOW = T0 + 3
PANE_TITLES = ("1 Flows", "2 Rules", "3 Canary", "4 Profiles")


def host_data(**changes) -> HostData:
    base = HostData(
        hostname="node-1",
        kernel="6.1.0-test",
        uptime_s=50 * 3600.0,
        cpu_percent=12.5,
        cpu_count=8,
        load=(0.5, 1.0, 0.75),
        mem_total=16 << 30,
        mem_used=4 << 30,
        mem_percent=25.0,
        net_rx_bps=123456.0,
        net_tx_bps=654.0,
    )
    return replace(base, **changes)


def ok(t: float = T0) -> Health:
    return Health(HealthState.OK, "", "", t, 0)


def snap(source: str, data=None, health: Health | None = None, seq: int = 1, t: float = T0) -> Snapshot:
    return Snapshot(source, seq, t, health or ok(t), data)


def settings(tmp_path, **changes) -> Settings:
    """Settings whose audit log and key live in tmp_path (never /var/log)."""
    return Settings(audit_log=str(tmp_path / "audit.jsonl"), audit_key=str(tmp_path / "audit.key"), **changes)


def make_app(tmp_path, *, kiosk: bool = False, collectors=None, **changes) -> EbpftopApp:
    runtime = Runtime(settings(tmp_path, kiosk=kiosk, **changes), collectors=collectors or [])
    app = EbpftopApp(runtime, clock=lambda: NOW)
    # Tests publish by hand and read the screen right after: no waiting for the frame
    # slot (the cadence itself is tested in test_frames.py).
    app.redraw_every = 0.0
    return app


def rules_data(n: int = 0, **changes) -> RulesData:
    """A RulesData with `n` count rules (`changes` go to every record)."""
    recs = tuple(
        replace(
            RuleRecord(
                i + 1,
                i,
                "count",
                f"count tcp to any port {1000 + i}",
                0,
                0,
                None,
                None,
                None,
                "root",
                T0,
                None,
                False,
            ),
            **changes,
        )
        for i in range(n)
    )
    return RulesData(recs, 0, ("eth0 ingress", "eth0 egress"), 1, 256)


def publish_fixed(runtime: Runtime) -> None:
    """One of each kind of state, so every pane and the header have something to show:
    flows down, canary off, profiles degraded after data, rules up with no rule."""
    bus = runtime.bus
    bus.publish(snap("host", host_data()))
    bus.publish(
        snap("flows", None, Health(HealthState.DOWN, "BPF unavailable: needs root", "run with sudo", None, 1))
    )
    bus.publish(snap("rules", rules_data()))
    bus.publish(
        snap(
            "canary",
            None,
            Health(HealthState.OFF, "Prometheus not configured", "set --prometheus-url", None, 1),
        )
    )
    bus.publish(
        snap("profiles", None, Health(HealthState.DEGRADED, "perf_event_open failed: EACCES", "", T0 - 40, 2))
    )


def _console(app, out) -> Console:
    width, height = app.size
    return Console(
        width=width,
        height=height,
        file=out,
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )


def _render(app):
    return app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)


def screen_text(app) -> str:
    """The screen as plain text, the way a terminal would show it."""
    console = _console(app, io.StringIO())
    console.print(_render(app))
    return console.export_text(styles=False)


def terminal_bytes(app) -> str:
    """Exactly what the app would write to a terminal for a full repaint."""
    out = io.StringIO()
    _console(app, out).print(_render(app))
    return out.getvalue()


# What the renderer itself may emit: SGR colour/style and cursor movement (CSI with
# digits and semicolons ending in a letter). Anything else starting with ESC did not
# come from the renderer.
RENDERER_CSI = re.compile(r"\x1b\[[0-9;:]*[A-Za-z]")


def raw_controls(text: str) -> list[str]:
    """Characters that would act on a terminal (C0 but newline, DEL, C1, invisible
    format characters such as bidi overrides), as U+XXXX."""
    return sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or unicodedata.category(c) == "Cf")
        }
    )


def assert_nothing_raw_reaches_the_terminal(out: str) -> None:
    """`out` (see `terminal_bytes`) holds nothing the renderer did not write itself:
    no control character from the data, no OSC (title, hyperlink, clipboard)."""
    bad = raw_controls(RENDERER_CSI.sub("", out))
    assert not bad, bad
    assert "pwned\x07" not in out and "\x1b]" not in out


def body_text(pane) -> str:
    """What a pane's body shows: its data, or the message saying why there is none."""
    from textual.widgets import Static

    part = ".message" if pane.has_class("-nodata") else ".data"
    return str(pane.query_one(part, Static).render())
