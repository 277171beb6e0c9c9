"""Debian's headless Chromium driven over the Chrome DevTools Protocol (aiohttp's websocket).

Only what the browser-kiosk tests and scripts/browser_screenshot.py need: open a page,
read the text of textual-serve's terminal (xterm.js), type keys as a person would, take a
screenshot. Every host name resolves to nothing but 127.0.0.1, and background fetches
are off: the browser makes no traffic beyond loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium")

# textual.js keeps its xterm.js Terminal in a closure: catch it as it is assigned
# (`this.terminal = new Terminal(...)`) through a setter on Object.prototype, before the
# page's scripts run, so the test reads what xterm itself holds on screen.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer) { window.__term = value; }
  },
});
"""

SCREEN_TEXT = """(() => {
  const t = window.__term;
  if (!t) { return null; }
  const b = t.buffer.active, out = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    out.push(line ? line.translateToString(true) : "");
  }
  return out.join("\\n");
})()"""

HELP_MARK = "╭─ Keys ─"  # ebpftop's help screen: its top border, with its title
SPECIAL = {"Escape": 27, "Enter": 13, "Tab": 9}

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root, in a container: the sandbox needs user namespaces it may not have
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools websocket closed during {method}")
            reply = json.loads(msg.data)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
        raise RuntimeError(f"DevTools websocket closed during {method}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def open(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
        await self.call("Page.navigate", url=url)

    async def screen(self) -> str | None:
        """The terminal's text as xterm.js holds it (None before the terminal exists)."""
        text = await self.evaluate(SCREEN_TEXT)
        return None if text is None else str(text)

    async def wait_screen(self, predicate: Any, *, timeout: float, what: str) -> str:
        """Poll the terminal until `predicate(text)`; fail naming `what` and the last screen."""
        text: str | None = None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            text = await self.screen()
            if text is not None and predicate(text):
                return text
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {what} within {timeout:g} s; the browser shows:\n{text}")

    async def settled(self, timeout: float, part: Callable[[str], object] = lambda t: t) -> str:
        """The screen once every key typed so far has been handled: keys are handled in
        order, so when the help screen (typed last) is up and then closed, the earlier
        ones are done. A frame can reach xterm.js in pieces, and the footer is built again
        after the help closes: so also the same `part` of the screen on two reads in a row."""
        await self.key("?")
        await self.wait_screen(lambda t: HELP_MARK in t, timeout=timeout, what="the help screen")
        await self.key("Escape")
        last: list[object] = []

        def still(text: str) -> bool:
            if HELP_MARK in text or "? Help" not in text.splitlines()[-1]:
                return False
            last[:] = [*last[-1:], part(text)]
            return len(last) == 2 and last[0] == last[1]

        return await self.wait_screen(still, timeout=timeout, what="the help screen closed, the screen still")

    async def key(self, key: str) -> None:
        """One key typed into the terminal, as keyDown/keyUp events: a printable character
        or a named key of SPECIAL."""
        await self.evaluate("window.__term && window.__term.focus()")
        if not key.isalnum() and key != " " and key not in SPECIAL:
            # Punctuation has no key code of its own (Windows' codes differ by layout, and
            # ord("]") is the context-menu key's): the character alone, as a keypress.
            await self.call("Input.dispatchKeyEvent", type="char", text=key, unmodifiedText=key)
            return
        if key in SPECIAL:
            vk = SPECIAL[key]
            down = {"key": key, "code": key, "windowsVirtualKeyCode": vk}
        else:
            vk = ord(key.upper())
            code = f"Key{key.upper()}" if key.isalpha() else ""
            shift = 8 if key.isupper() else 0
            down = {"key": key, "code": code, "text": key, "unmodifiedText": key}
            down |= {"windowsVirtualKeyCode": vk, "modifiers": shift}
        await self.call("Input.dispatchKeyEvent", type="keyDown", **down)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, windowsVirtualKeyCode=vk)

    async def screenshot(self, path: pathlib.Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


async def _devtools_port(profile: pathlib.Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited ({proc.returncode}) before DevTools listened")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().split()[0])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"chromium's DevTools did not listen within {timeout:g} s")


@contextlib.asynccontextmanager
async def chromium(width: int = 1280, height: int = 800) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page, ended (and its profile removed) on exit."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (scripts/setup.sh installs Debian's)")
    profile = pathlib.Path(tempfile.mkdtemp(prefix="ebpftop-chromium-"))
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    try:
        port = await _devtools_port(profile, proc, timeout=30)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            async with http.ws_connect(page_url, max_msg_size=64 * 2**20) as ws:
                yield Page(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
