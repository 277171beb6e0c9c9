#!/usr/bin/env python3
"""Write screenshots/browser-kiosk.png: the dashboard as `ebpftop serve` shows it in a browser.

`ebpftop serve --replay screenshots/lab.rec.gz --paused` (the real lab recording, read-only
like every browser session) opened in Debian's headless Chromium (tests/cdp.py), stepped
with `]` to the moment scripts/screenshots.py pictures, and captured once the screen
holds still. From the file alone, so the picture changes only when the screen, the
recording or the browser does (Chromium's font rendering may differ by a pixel between
versions). No root; traffic on 127.0.0.1 only.

Usage: .venv/bin/python scripts/browser_screenshot.py [--recording FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

from cdp import chromium  # noqa: E402  (tests/cdp.py: the DevTools client the tests use)

from screenshots import SOURCE, moment  # noqa: E402  (the same moment as the SVG pictures)

WINDOW = (1440, 860)
PANES = ("1 Flows", "2 Rules", "3 Canary", "4 Profiles")
BOUND = 60.0
TOAST = "incident marker"  # tui/flush.py: the title of a marker's toast


def ticks_to(recording: pathlib.Path) -> int:
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.replay import ReplayRuntime
    from ebpftop.core.settings import Settings

    load_payload_types()
    with tempfile.TemporaryDirectory() as home:
        runtime = ReplayRuntime.from_file(Settings(audit_log=f"{home}/audit.jsonl"), str(recording))
        return moment(runtime.replay)


async def shoot(url: str, steps: int, out: pathlib.Path) -> None:
    async with chromium(*WINDOW) as page:
        # The page's own size, not the window's (whose frame takes some of it): the picture's.
        width, height = WINDOW
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.open(url)
        await page.wait_screen(lambda t: all(p in t for p in PANES), timeout=BOUND, what="the four panes")
        await page.settled(BOUND)  # the app takes keys now
        for _ in range(steps):
            await page.key("]")
        await page.settled(BOUND)  # stepped as far as asked
        # Stepping past the incident marker toasts it for 8 s, so a picture taken at once
        # would show it or not by the machine's speed: the picture is the screen after it.
        await page.wait_screen(lambda t: TOAST not in t, timeout=BOUND, what="the marker's toast gone")
        await page.settled(BOUND)
        await page.screenshot(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recording", type=pathlib.Path, default=SOURCE)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "screenshots" / "browser-kiosk.png")
    args = parser.parse_args(argv)
    if not args.recording.is_file():
        print(f"browser_screenshot: no recording at {args.recording}", file=sys.stderr)
        return 2
    steps = ticks_to(args.recording)
    with tempfile.TemporaryDirectory(prefix="ebpftop-browser-") as home:
        (pathlib.Path(home) / "config.toml").touch()
        env = {
            **os.environ,
            "EBPFTOP_CONFIG": f"{home}/config.toml",
            "EBPFTOP_AUDIT_LOG": f"{home}/audit.jsonl",
        }
        cmd = [sys.executable, "-m", "ebpftop.cli.main", "serve", "--listen", "127.0.0.1:0"]
        cmd += ["--replay", str(args.recording), "--paused"]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert server.stdout is not None
            url = None
            for line in server.stdout:  # the first line names the URL, or the server exits
                if m := re.search(r"http://\S+", line):
                    url = m.group(0)
                    break
            if url is None:
                print("browser_screenshot: `ebpftop serve` did not start", file=sys.stderr)
                return 1
            asyncio.run(shoot(url, steps, args.out))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
