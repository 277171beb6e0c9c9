"""The web side of `ebpftop serve`: textual-serve's session handler behind our own checks.

Why the browser cannot change what runs (read in textual-serve 1.0.0, the floor, and
1.1.3, `server.py` and `app_service.py`; the same in both): the command is a string
handed to `Server(command)` once and passed unchanged to `asyncio.create_subprocess_shell`
for every websocket. A browser's request
contributes only `width`/`height` (query, through `to_int`: integers or the default) and,
on the websocket, JSON envelopes `stdin` (keystrokes written to the app's stdin as data
packets), `resize` (two numbers), `ping`, `blur` and `focus`: none of them reaches the
command line or the environment. So `--kiosk` stays, and keystrokes land in an app whose
every acting action is disabled (`EbpftopApp.check_action`) and whose gate is read-only.

What textual-serve does not do, this module does in front of it: a token (`?token=` once,
then an HttpOnly cookie), refusing cross-site websockets (any page a person visits could
otherwise open ws://127.0.0.1:PORT/ws and read the node's flows), refusing foreign Host
names on a loopback server without a token (DNS rebinding), a cap on sessions, and TLS.
Its `/download` route is left out: the dashboard delivers no file.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import signal
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

COOKIE = "ebpftop_serve"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
GOOGLE_FONT = re.compile(r"<link\s[^>]*fonts\.googleapis\.com[^>]*>", re.S)
LOCAL_FONT = (
    "@font-face {{ font-family: 'Roboto Mono'; font-weight: 100 700; "
    "src: url('{static}fonts/RobotoMono-VariableFont_wght.ttf') format('truetype'); }}"
)


class SiteError(Exception):
    """The server could not start (address in use, bad certificate); str() says which."""


def _host_name(host: str) -> str:
    """`name` of a Host header `name:port` (`[v6]:port` keeps its brackets off)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The server's TLS settings from PEM files; SiteError naming the files when they do not load."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SiteError(f"--tls-cert {cert} / --tls-key {key}: {exc}") from None
    return ctx


class KioskSite:
    def __init__(
        self,
        *,
        command: str,
        token: str | None,
        tls: ssl.SSLContext | None,
        max_sessions: int,
        loopback_only: bool,
    ) -> None:
        self.server = Server(command, title="ebpftop")
        self.command = command
        self.token = token
        self.tls = tls
        self.loopback_only = loopback_only
        self.sessions = asyncio.Semaphore(max_sessions)
        # The cookie holds a value derived from the token, not the token itself.
        self._cookie = hmac.new((token or "").encode(), b"ebpftop-serve-session", hashlib.sha256).hexdigest()

    # -- checks ---------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token")
        if given is not None:
            return hmac.compare_digest(given.encode(), self.token.encode())
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self._cookie.encode())

    def _refusal(self, request: web.Request) -> str | None:
        if self.loopback_only and _host_name(request.host) not in LOOPBACK_NAMES:
            return f"this server answers only to 127.0.0.1 and localhost, not to {request.host!r}"
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and urlsplit(origin).netloc != request.host:
            return "a websocket from another site is refused"
        if not self._authorized(request):
            return "a token is needed: open the URL `ebpftop serve` printed at start (with ?token=)"
        return None

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return web.Response(status=403, text=f"ebpftop serve: {refusal}\n")
        if self.token is not None and "token" in request.query:
            # Trade the token for a cookie and drop it from the address bar (screenshots,
            # history); the websocket and static files then come with the cookie.
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.rel_url.with_query(query)
            moved = web.HTTPSeeOther(str(target))
            moved.set_cookie(
                COOKIE, self._cookie, httponly=True, samesite="Strict", secure=self.tls is not None
            )
            return moved
        response: web.StreamResponse = await handler(request)
        return response

    # -- routes ---------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        """textual-serve's page, with its URLs on the address the browser used.

        (textual-serve writes its `public_url`, the listen address, into the page: a
        wildcard listen address would send browsers to 0.0.0.0.)
        """
        base = f"{request.scheme}://{request.host}"
        ws = ("wss://" if request.scheme == "https" else "ws://") + request.host + "/ws"
        context = {
            "font_size": 16,
            "app_websocket_url": ws,
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": "ebpftop (read-only)"},
        }
        page = aiohttp_jinja2.render_string("app_index.html", request, context)
        # Its font comes from Google's servers; a wall display on a node's network may have
        # no way out, and none is needed: textual-serve ships the same font in /static.
        page = GOOGLE_FONT.sub(f"<style>{LOCAL_FONT.format(static=base + '/static/')}</style>", page, count=1)
        return web.Response(text=page, content_type="text/html")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.sessions.locked():
            return web.Response(status=503, text="ebpftop serve: too many browser sessions at once\n")
        async with self.sessions:
            return await self.server.handle_websocket(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.server.templates_path))
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/ws", self.websocket),
                web.static("/static", self.server.statics_path),
            ]
        )
        return app

    # -- running --------------------------------------------------------------------

    def run(self, host: str, port: int, url_host: str, source: str) -> None:
        asyncio.run(self._serve(host, port, url_host, source))

    async def _serve(self, host: str, port: int, url_host: str, source: str) -> None:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=self.tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SiteError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = runner.addresses[0][1]
        scheme = "https" if self.tls else "http"
        url = f"{scheme}://{url_host}:{bound}/" + (f"?token={self.token}" if self.token else "")
        print(f"ebpftop serve: open {url}", flush=True)
        print(f"ebpftop serve: read-only, each browser session views the {source}", flush=True)
        if self.token and not self.tls:
            print("ebpftop serve: warning: no TLS, the token travels in clear", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()  # closes the websockets: each session is told to quit
