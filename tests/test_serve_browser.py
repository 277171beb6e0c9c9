"""`ebpftop serve` in real headless Chromium (Debian's), driven over DevTools (tests/cdp.py).

The browser reads the dashboard as xterm.js holds it and types keys as a person does.
Read-only is checked where it is enforced: every session process the server starts has
`--kiosk`, whatever the URL or the websocket says; acting keys change nothing on screen
and write nothing to the audit log (pointed at a tmp file through EBPFTOP_AUDIT_LOG).
Traffic stays on 127.0.0.1: the server listens there and Chromium resolves no other name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from cdp import CHROMIUM, Page, chromium
from conftest import need, need_root

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "data" / "demo.rec"
PANES = ("1 Flows", "2 Rules", "3 Canary", "4 Profiles")
BOUND = 60.0  # seconds: generous for a loaded 2-CPU machine; the condition ends the wait


@pytest.fixture
def browser_present() -> None:
    need(CHROMIUM is not None, "chromium is not installed (scripts/setup.sh installs it)")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    audit: pathlib.Path

    def sessions(self) -> list[list[str]]:
        """The command lines of the dashboard processes under the server (its sessions)."""
        return [argv for _, argv in descendants(self.proc.pid) if "ebpftop.cli.main" in argv]

    def session_pids(self) -> list[int]:
        return [pid for pid, argv in descendants(self.proc.pid) if "ebpftop.cli.main" in argv]


def running(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def descendants(pid: int) -> list[tuple[int, list[str]]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError):
            raw = pathlib.Path(f"/proc/{child}/cmdline").read_bytes()
            out.append((child, [a.decode() for a in raw.split(b"\0") if a]))
        todo += children.get(child, [])
    return out


def read_line_with(proc: subprocess.Popen[str], pattern: str, timeout: float = BOUND) -> str:
    """The first line of the process's stdout matching `pattern`; fails naming what it said."""
    assert proc.stdout is not None
    said: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            said.append(line)
            if m := re.search(pattern, line):
                return m.group(0)
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    raise AssertionError(f"no line matching {pattern!r}; stdout: {said!r}; stderr: {err!r}")


def own_config(tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment with an empty config file of the test's own (no /etc or ~ file)."""
    (tmp_path / "config.toml").touch()
    return {**os.environ, "EBPFTOP_CONFIG": str(tmp_path / "config.toml")}


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, as systemd stops it; SIGKILL only if it has not ended 30 s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve(tmp_path: pathlib.Path, *args: str) -> Iterator[Served]:
    audit = tmp_path / "audit.jsonl"
    env = {**own_config(tmp_path), "EBPFTOP_AUDIT_LOG": str(audit)}
    cmd = [sys.executable, "-m", "ebpftop.cli.main", "serve", "--listen", "127.0.0.1:0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = read_line_with(proc, r"https?://\S+")
        yield Served(proc, url, audit)
    finally:
        stop(proc)


async def wait_panes(page: Page, *more: str) -> str:
    want = (*PANES, *more)
    return await page.wait_screen(lambda t: all(w in t for w in want), timeout=BOUND, what=" and ".join(want))


def panes_area(screen: str) -> list[str]:
    """The screen from the panes down: paused, they hold still; the header stays live."""
    lines = screen.splitlines()
    return lines[next(i for i, line in enumerate(lines) if PANES[0] in line) :]


async def acting_keys_do_nothing(page: Page) -> None:
    """R, m, U; the Rules pane's a e d t; Flows' r; Profiles' c: the screen stays as it was
    (paused first, so no new data moves it meanwhile)."""
    for focus, keys in (("", "RmU"), ("2", "aedt"), ("1", "r"), ("4", "c")):
        if focus:
            await page.key(focus)
        before = await page.settled(BOUND, panes_area)
        for key in keys:
            await page.key(key)
        after = await page.settled(BOUND, panes_area)
        assert panes_area(after) == panes_area(before), f"keys {keys!r} moved:\n{before}\n---\n{after}"


def assert_kiosk_sessions(served: Served, count: int | None = None) -> None:
    sessions = served.sessions()
    assert sessions, "the server runs no dashboard session"
    if count is not None:
        assert len(sessions) == count, sessions
    for argv in sessions:
        assert "--kiosk" in argv, f"a session without --kiosk: {argv}"


def assert_nothing_audited(served: Served) -> None:
    written = served.audit.read_text() if served.audit.exists() else ""
    assert written == "", f"the kiosk wrote to the audit log:\n{written}"


async def test_browser_shows_the_four_panes_and_no_key_acts(tmp_path, browser_present):
    with serve(tmp_path, "--replay", str(DEMO)) as served:
        async with chromium() as page:
            await page.open(served.url)
            await wait_panes(page, "READ-ONLY")
            assert_kiosk_sessions(served, count=1)
            await page.key(" ")
            await page.wait_screen(lambda t: "PAUSED" in t, timeout=BOUND, what="PAUSED")
            await acting_keys_do_nothing(page)
        assert_nothing_audited(served)
        pids = served.session_pids()
    assert served.proc.returncode == 0
    # The session ends with the browser or, at the latest, with the server: none is left
    # (a process that closed its output may still be exiting: wait for that, bounded).
    end = time.monotonic() + BOUND
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < end:
        time.sleep(0.1)
    assert left == []


async def test_url_and_websocket_messages_cannot_lift_kiosk(tmp_path):
    with serve(tmp_path, "--replay", str(DEMO)) as served:
        base = served.url.rstrip("/")
        host = base.split("://", 1)[1]
        hostile = "/ws?width=100&height=30&kiosk=0&read_only=0&command=sh&argv=--no-kiosk"
        async with aiohttp.ClientSession() as http:
            # Another site's page may not open the websocket; nor may a foreign Host name.
            async with http.get(base + "/ws", headers={"Origin": "http://evil.example"}) as resp:
                assert resp.status == 403
            async with http.get(base + "/", headers={"Host": "evil.example"}) as resp:
                assert resp.status == 403
            async with http.ws_connect(base + hostile, headers={"Origin": f"http://{host}"}) as ws:
                first = await asyncio.wait_for(ws.receive(), BOUND)  # the app's first output
                assert first.type == aiohttp.WSMsgType.BINARY
                for envelope in (
                    ["command", "sh -c 'touch /tmp/x'"],
                    ["argv", ["--no-kiosk"]],
                    ["meta", {"type": "kiosk", "value": False}],
                    ["resize", {"width": 120, "height": 40}],
                    ["stdin", "RmUr"],
                    ["stdin", "2aedt4c"],
                ):
                    await ws.send_str(json.dumps(envelope))
                await ws.send_str(json.dumps(["ping", "sync"]))
                while (msg := await asyncio.wait_for(ws.receive(), BOUND)).type != aiohttp.WSMsgType.TEXT:
                    pass
                assert json.loads(msg.data) == ["pong", "sync"]  # the server read all of the above
                assert_kiosk_sessions(served, count=1)
        assert_nothing_audited(served)


async def test_token_is_needed_and_traded_for_a_cookie(tmp_path, browser_present):
    token = "a" * 8 + "0123456789abcdef"
    (tmp_path / "token").write_text(token + "\n")
    with serve(tmp_path, "--replay", str(DEMO), "--token-file", str(tmp_path / "token")) as served:
        assert served.url.endswith(f"?token={token}")
        base = served.url.split("?", 1)[0].rstrip("/")
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/ws", "/static/js/textual.js", "/?token=wrong" + token):
                async with http.get(base + path, allow_redirects=False) as resp:
                    assert resp.status == 403, path
                    assert "token" in await resp.text()
        async with chromium() as page:
            await page.open(served.url)
            await wait_panes(page, "READ-ONLY")
            assert "token" not in await page.evaluate("location.href")  # not left in the address bar


def self_signed(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert, key = tmp_path / "serve.crt", tmp_path / "serve.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_serves_the_page_and_the_session_over_https(tmp_path):
    cert, key = self_signed(tmp_path)
    (tmp_path / "token").write_text("tls-token-0123456789abcdef\n")
    args = ("--replay", str(DEMO), "--token-file", str(tmp_path / "token"))
    with serve(tmp_path, *args, "--tls-cert", str(cert), "--tls-key", str(key)) as served:
        assert served.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        # unsafe=True: aiohttp's jar keeps no cookie for an IP address unless told to.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(served.url, ssl=trust) as page:
                assert page.status == 200  # after the 303 that set the cookie
                (moved,) = page.history
                assert moved.status == 303 and "Secure" in moved.headers["Set-Cookie"]
                assert f"wss://{page.url.host}:{page.url.port}/ws" in await page.text()
            base = served.url.split("?", 1)[0].rstrip("/")
            async with http.ws_connect(base.replace("https", "wss") + "/ws", ssl=trust) as ws:
                first = await asyncio.wait_for(ws.receive(), BOUND)
                assert first.type == aiohttp.WSMsgType.BINARY  # the dashboard's first output
        assert_nothing_audited(served)


async def test_sessions_beyond_the_cap_are_turned_away(tmp_path):
    with serve(tmp_path, "--replay", str(DEMO), "--max-sessions", "1") as served:
        ws_url = served.url.rstrip("/") + "/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as first:
            await asyncio.wait_for(first.receive(), BOUND)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_url)
            assert refused.value.status == 503
            assert_kiosk_sessions(served, count=1)


def serve_refuses(tmp_path: pathlib.Path, *args: str) -> str:
    env = own_config(tmp_path)
    cmd = [sys.executable, "-m", "ebpftop.cli.main", "serve", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=BOUND)
    assert done.returncode == 2, done
    assert done.stdout == ""
    return done.stderr


def test_a_non_local_address_needs_a_token(tmp_path):
    err = serve_refuses(tmp_path, "--listen", "0.0.0.0:0", "--replay", str(DEMO))
    assert "reachable from other machines" in err and "--token-file" in err
    (tmp_path / "short").write_text("abc\n")
    err = serve_refuses(tmp_path, "--listen", "0.0.0.0:0", "--token-file", str(tmp_path / "short"))
    assert f"--token-file {tmp_path / 'short'}" in err and "at least 16" in err
    err = serve_refuses(tmp_path, "--listen", "0.0.0.0:0", "--tls-cert", str(tmp_path / "c.pem"))
    assert "--tls-cert and --tls-key go together" in err
    (tmp_path / "c.pem").write_text("not a certificate\n")
    err = serve_refuses(tmp_path, "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem"))
    assert f"--tls-cert {tmp_path / 'c.pem'} / --tls-key {tmp_path / 'c.pem'}:" in err


# -- in front of a real agent -------------------------------------------------------------


@contextlib.contextmanager
def agent(tmp_path: pathlib.Path, sock: pathlib.Path) -> Iterator[subprocess.Popen[str]]:
    env = own_config(tmp_path)
    cmd = [sys.executable, "-m", "ebpftop.cli.main", "--iface", "lo", "agent", "--socket", str(sock)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        read_line_with(proc, r"serving " + re.escape(str(sock)))
        yield proc
    finally:
        stop(proc)


async def test_browser_views_the_agent_and_recovers_after_it_restarts(tmp_path, browser_present):
    need_root()
    sock = tmp_path / "agent.sock"
    with agent(tmp_path, sock) as first, serve(tmp_path, "--agent", str(sock)) as served:
        async with chromium() as page:
            await page.open(served.url)
            await wait_panes(page, "READ-ONLY", "via agent")
            assert_kiosk_sessions(served, count=1)
            assert any(argv[argv.index("--connect") + 1] == str(sock) for argv in served.sessions())
            await page.key(" ")
            await page.wait_screen(lambda t: "PAUSED" in t, timeout=BOUND, what="PAUSED")
            await acting_keys_do_nothing(page)
            await page.key(" ")

            first.send_signal(signal.SIGKILL)  # no goodbye on the stream
            first.wait(timeout=30)
            await page.wait_screen(lambda t: "AGENT DOWN" in t, timeout=BOUND, what="AGENT DOWN")
            with agent(tmp_path, sock):
                screen = await page.wait_screen(
                    lambda t: "via agent" in t and "AGENT DOWN" not in t, timeout=BOUND, what="agent back"
                )
                assert all(p in screen for p in PANES)
                assert_kiosk_sessions(served, count=1)  # the same session recovered by itself
    assert_nothing_audited(served)


async def test_sessions_end_with_the_server_even_when_it_is_killed(tmp_path):
    """A wall display's server restarted by SIGKILL (OOM, systemd's final kill) must not
    leave its sessions replaying for ever, each a share of the CPU."""
    with serve(tmp_path, "--replay", str(DEMO)) as served:
        base = served.url.rstrip("/")
        host = base.split("://", 1)[1]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(base + "/ws?width=80&height=24", headers={"Origin": f"http://{host}"}) as ws,
        ):
            await asyncio.wait_for(ws.receive(), BOUND)  # the session's first output
            pids = served.session_pids()
            assert pids, "no session process"
            served.proc.kill()
            served.proc.wait()
        end = time.monotonic() + BOUND
        while any(running(p) for p in pids) and time.monotonic() < end:
            await asyncio.sleep(0.2)
        left = [p for p in pids if running(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert not left, f"sessions outlived their server: {left}"
