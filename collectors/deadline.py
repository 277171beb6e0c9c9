"""One total deadline per blocking request, and worker threads that never hold the exit.

Socket timeouts bound each read, not the request: a server that trickles one byte at a
time keeps the caller forever. A `Deadline` shuts down the request's sockets when it
expires (waking a blocked recv in any thread); `DeadlineAdapter` registers every
socket a requests session uses. Name resolution cannot be interrupted, so
`DaemonExecutor` workers never delay the exit. Async clients need none of this
(`asyncio.timeout` cancels and closes).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Deadline:
    """A request's wall: `with Deadline(5.0) as d:` makes `d` the calling thread's
    current deadline; sockets it `watch`es are shut down when it expires or is `cut`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socks: list[tuple[socket.socket, bool]] = []
        self._expired = False
        self._done = False

    @property
    def expired(self) -> bool:
        return self._expired or time.monotonic() >= self.at

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def watch(self, sock: socket.socket, *, owned: bool = False) -> None:
        """Shut `sock` down at expiry; an `owned` socket (a dup) is closed at the end."""
        with self._lock:
            if self._done:
                if owned:
                    sock.close()
                return
            self._socks.append((sock, owned))
            if self._expired:
                _shut(sock)

    def cut(self) -> None:
        """Expire now (the client is closing): every blocked read returns at once."""
        with self._lock:
            if self._done or self._expired:
                return
            self._expired = True
            for sock, _ in self._socks:
                _shut(sock)

    def __enter__(self) -> Deadline:
        self._outer = getattr(_local, "deadline", None)
        _local.deadline = self
        _watchdog.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _local.deadline = self._outer
        with self._lock:
            self._done = True
            socks, self._socks = self._socks, []
        for sock, owned in socks:
            if owned:
                sock.close()


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown: on a TLS socket it cuts the connection under
    # the TLS layer, which a read blocked in another thread notices at once.
    # OSError: already closed, nothing left to wake.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def current() -> Deadline | None:
    """The deadline of the request this thread is making, if any."""
    return getattr(_local, "deadline", None)


class _Watchdog:
    """One daemon thread expiring deadlines in time order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, d: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (d.at, next(self._seq), d))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, d = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            d.cut()


_watchdog = _Watchdog()


class Deadlines:
    """The deadlines of one client's requests in flight, so closing it cuts them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Deadline] = set()
        self._closed = False

    @contextmanager
    def start(self, seconds: float) -> Iterator[Deadline]:
        d = Deadline(seconds)
        with self._lock:
            self._live.add(d)
            if self._closed:
                d.cut()
        try:
            with d:
                yield d
        finally:
            with self._lock:
                self._live.discard(d)

    def cut_all(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
        for d in live:
            d.cut()


# --- requests / urllib3 -----------------------------------------------------------------


class _Watched:
    """Registers the connection's sockets with the calling thread's deadline."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        # a mixin: mypy cannot see the urllib3 connection class that follows it in the MRO
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        d = current()
        if d is not None:
            # a dup: TLS wrapping detaches `sock`, and the handshake must be cut too
            d.watch(sock.dup(), owned=True)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        d = current()
        if d is not None and self.sock is not None:  # a pooled connection, reused
            d.watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]  # a mixin, as in _new_conn


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or through an HTTP proxy) obey the
    calling thread's `Deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


# --- threads ---------------------------------------------------------------------------


_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]  # (future, fn, args, kwargs)


class DaemonExecutor(Executor):
    """A thread pool whose workers are daemon threads.

    ThreadPoolExecutor's workers are joined when the interpreter exits, so one worker
    stuck in a request keeps a program that has finished alive. Here nothing waits for
    a worker: `shutdown` drops queued work and returns.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)  # released by a worker each time it waits for work
        self._threads = 0
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            future: Future[Any] = Future()
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(timeout=0) and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}_{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Queued work is cancelled; work already running finishes on its own."""
        with self._lock:
            self._shutdown = True
            workers = self._threads
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(workers):
            self._queue.put(None)
