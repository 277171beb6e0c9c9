"""The profiles source: the BPF CPU sampler and pprof endpoints behind one collector.

Each second the sampler is drained into sliding windows (10 s, 60 s); each pprof URL
is fetched in its own task, a fetch starting every `pprof_every` seconds (or only on
demand), and shown as the profiles it gave over the last PPROF_SPAN seconds, merged:
fetched back to back, that is every CPU sample of the last minute, so a slow request's
trace id from the canary's window still finds its samples. Either
input may fail alone: its status says why and the other carries on. Without root the
sampler is off and pprof still works; with neither there is nothing to show and the
source says so with a hint.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ebpftop.collectors.identity.shared_pods import SharedPods
from ebpftop.core.collector import Collector, SourceUnavailable
from ebpftop.core.settings import Settings

from .aggregate import GROUP_KEYS, StackKey, filter_stacks, stacks_from_counts, summarize
from .model import Profile, ProfilesData, SourceStatus, StackSample, Tags, WithSource
from .sampler import Entry, RawStack, Sampler, SamplerUnavailable
from .tags import TagCache
from .windows import SlidingWindows

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

WINDOWS = (10.0, 60.0)
# A window's summary is rebuilt when a twelfth of its span has passed (10 s: every
# second, 60 s: every 5 s): a minute's profile barely moves in a second, and rebuilding
# it is most of the steady CPU cost.
REFRESH_FRACTION = 1 / 12
PRUNE_EVERY = 10.0  # seconds between sweeps of expired process tags (they refresh on use anyway)
MAX_CAPTURES = 5  # on-demand captures kept (pprof latest-per-URL comes on top)
PPROF_SPAN = WINDOWS[-1]  # seconds of periodic pprof profiles merged per URL
PPROF_MODULE = f"{__package__}.pprof"  # httpx and protobuf load only when pprof is used


Named = tuple[Tags, tuple[str, ...], int]  # (tags, root-first frames, samples)


@dataclass(frozen=True)
class _Fetched:
    """One periodic pprof profile as fetched: its span and its stacks."""

    start: float
    end: float
    stacks: tuple[StackSample, ...]


@dataclass
class _Pending:
    """An on-demand BPF capture filling up from the next drains."""

    want: dict[str, str]
    name: str
    start: float
    deadline: float
    counts: dict[StackKey, int] = field(default_factory=lambda: collections.defaultdict(int))
    done: asyncio.Future[Profile] | None = None


class ProfilesCollector(Collector):
    name = "profiles"

    def __init__(
        self,
        *,
        hz: int = 49,
        pprof_urls: tuple[str, ...] = (),
        pprof_seconds: float = 10.0,
        pprof_every: float = 60.0,
        pprof_timeout: float = 5.0,
        interval: float = 1.0,
        max_stacks: int = 100,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.time,
        pods: SharedPods | None = None,
    ) -> None:
        self.interval = interval
        self.hz = hz
        self.pprof_urls = tuple(dict.fromkeys(pprof_urls))
        self.pprof_seconds = pprof_seconds
        self.pprof_every = pprof_every
        self.pprof_timeout = pprof_timeout
        self.max_stacks = max_stacks
        self._clock = clock
        # The sampler skips ebpftop itself: its own drains would otherwise top the list.
        self._sampler = (
            sampler if sampler is not None else (Sampler(hz, skip_tgid=os.getpid()) if hz > 0 else None)
        )
        self._windows = SlidingWindows(WINDOWS)
        self._summaries: dict[float, Profile] = {}
        self.pods = pods
        self._tags = TagCache(pods=pods)
        self._pruned = time.monotonic()
        self._tagged = WithSource("bpf")
        self._status: dict[str, SourceStatus] = {}
        self._pprof: dict[str, Profile] = {}  # periodic profiles of the last PPROF_SPAN per URL, merged
        self._pprof_kept: dict[str, list[_Fetched]] = {}
        self._captures: collections.deque[Profile] = collections.deque(maxlen=MAX_CAPTURES)
        self._pending: list[_Pending] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._bpf_start: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one drain at a time
        self._naming: asyncio.Future[list[Named]] | None = None  # the drain's thread hop, when it needs one
        self._lost = 0
        self._client: httpx.AsyncClient | None = None  # the pprof fetches', made at the first
        self._client_lock = asyncio.Lock()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._sampler is None and not self.pprof_urls:
            raise SourceUnavailable(
                "profiles are off: sampling at 0 Hz and no pprof URL",
                "set profile_hz or give --pprof URL",
                off=True,
            )
        if self._sampler is not None and self._bpf_start is None:
            self._status["bpf"] = SourceStatus("bpf", "pending", "compiling the BPF sampler")
            # Compiling takes seconds: the first snapshot (and the UI) must not wait.
            self._bpf_start = asyncio.create_task(
                asyncio.to_thread(self._sampler.start), name="profiles:bpf-start"
            )
        for url in self.pprof_urls:
            self._status.setdefault(
                url,
                SourceStatus(
                    url, "pending", "first fetch under way" if self.pprof_every > 0 else "fetched on demand"
                ),
            )
            if self.pprof_every > 0:
                self._tasks.append(asyncio.create_task(self._pprof_loop(url), name=f"profiles:pprof:{url}"))
        if self.pods is not None and self._sampler is not None:  # only the BPF samples have pids
            await self.pods.acquire(self)

    async def close(self) -> None:
        if self.pods is not None:
            await self.pods.release(self)
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        if self._bpf_start is not None:
            # A thread cannot be cancelled: wait for the compile to end, then detach.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._bpf_start)
            self._bpf_start = None
        if self._sampler is not None:
            await asyncio.to_thread(self._sampler.close)
        for p in self._pending:
            if p.done is not None and not p.done.done():
                p.done.set_exception(SourceUnavailable("profiles source closed"))
        self._pending.clear()

    # --- sampling ---------------------------------------------------------------------

    def _bpf_state(self) -> bool:
        """True when the sampler runs; updates the bpf status as the start ends."""
        task = self._bpf_start
        if task is None or not task.done():
            return False
        if self._status.get("bpf", SourceStatus("bpf", "")).state == "pending":
            exc = task.exception() if not task.cancelled() else None
            if exc is None:
                self._status["bpf"] = SourceStatus("bpf", "ok", f"sampling every CPU at {self.hz} Hz")
            elif isinstance(exc, SamplerUnavailable):
                self._status["bpf"] = SourceStatus("bpf", "off", exc.message, hint=exc.hint)
            else:
                self._status["bpf"] = SourceStatus("bpf", "error", f"{type(exc).__name__}: {exc}")
        return self._sampler is not None and self._sampler.running

    async def _drain(self) -> dict[StackKey, int]:
        """This second's samples by (tags, frames). Stacks named from what is known whose
        process tags are fresh are counted here on the loop (one syscall and dict lookups
        in steady state; a thread hop costs more than that); the rest is named and tagged
        in one thread hop."""
        if self._naming is not None and not self._naming.done():
            await asyncio.wait({self._naming})  # a cancelled drain's thread still holds the sampler
        sampler = self._sampler
        assert sampler is not None  # drained only while the sampler runs
        known, new = sampler.drain_known()
        if new:
            named, new = sampler.name_known(new)
            known += named
        counts: dict[StackKey, int] = collections.defaultdict(int)
        cached, now = self._tags.cached, self._tags.now()
        untagged: list[RawStack] = []
        for raw in known:
            tags = cached(raw.tgid, raw.comm, now)
            if tags is None:
                untagged.append(raw)
            else:
                counts[(self._tagged(tags), raw.frames)] += raw.count
        if new or untagged or sampler.housekeeping_due():
            self._naming = asyncio.ensure_future(asyncio.to_thread(self._name_and_tag, new, untagged, known))
            for full, frames, n in await self._naming:
                counts[(full, frames)] += n
        if time.monotonic() - self._pruned >= PRUNE_EVERY:
            self._pruned = time.monotonic()
            if self._tags.prune():
                self._tagged.clear()  # only tag sets still cached stay
        lost = sampler.lost()
        self._lost = lost[0] + lost[1]
        return dict(counts)

    def _name_and_tag(self, new: list[Entry], untagged: list[RawStack], known: list[RawStack]) -> list[Named]:
        """In a thread: names for stacks never seen, tags read from /proc."""
        early = self._tags.ttl / 2
        out = []
        assert self._sampler is not None  # called from _drain only
        for raw in (*self._sampler.name_new(new), *untagged):
            out.append((self._tagged(self._tags.get(raw.tgid, raw.comm, early=early)), raw.frames, raw.count))
        for raw in known:  # already tagged ones near expiry are read now, not in a hop of their own
            self._tags.get(raw.tgid, raw.comm, early=early)
        return out

    async def collect(self) -> ProfilesData:
        now = self._clock()
        running = self._bpf_state()
        if running:
            async with self._lock:
                try:
                    counts = await self._drain()
                except Exception as exc:
                    self._status["bpf"] = SourceStatus(
                        "bpf",
                        "error",
                        f"drain failed: {type(exc).__name__}: {exc}",
                        self._status["bpf"].last_ok,
                    )
                    counts = {}
                else:
                    self._status["bpf"] = SourceStatus(
                        "bpf", "ok", f"sampling every CPU at {self.hz} Hz", now
                    )
            self._windows.add(now, counts)
            self._feed_pending(now, counts)
        elif self._bpf_start is not None and self._bpf_start.done() and not self.pprof_urls:
            st = self._status["bpf"]
            raise SourceUnavailable(st.message, st.hint or "run `ebpftop doctor`")
        windows = []
        if running:
            for seconds in WINDOWS:
                last = self._summaries.get(seconds)
                every = max(self.interval, seconds * REFRESH_FRACTION)
                if last is None or now - last.end >= every - self.interval / 2:
                    oldest = self._windows.oldest(now, seconds)
                    last = self._summaries[seconds] = self._windows.profile(
                        f"bpf {seconds:g}s",
                        min(oldest, now) - self.interval,
                        now,
                        seconds,
                        max_stacks=self.max_stacks,
                    )
                windows.append(last)
        return ProfilesData(
            hz=self.hz if running else None,
            windows=tuple(windows),
            captures=tuple(self._pprof[u] for u in self.pprof_urls if u in self._pprof)
            + tuple(self._captures),
            sources=tuple(self._status[k] for k in sorted(self._status, key=lambda k: (k != "bpf", k))),
            lost_samples=self._lost,
        )

    def degraded_reason(self, payload: ProfilesData) -> str:
        bad = [f"{s.name}: {s.message}" for s in payload.sources if s.state == "error"]
        return "; ".join(bad)

    # --- pprof ------------------------------------------------------------------------

    async def _fetch_raw(self, url: str) -> _Fetched:
        await _load_pprof()
        from .pprof import fetch_profile

        started = self._clock()
        client = await self._http_client()
        prof = await fetch_profile(url, seconds=self.pprof_seconds, timeout=self.pprof_timeout, client=client)
        end = self._clock()
        start = prof.time_nanos / 1e9 if prof.time_nanos else started
        span = prof.duration_nanos / 1e9 if prof.duration_nanos else end - started
        return _Fetched(start, start + span, prof.stacks)

    async def _http_client(self) -> httpx.AsyncClient:
        """One client for every fetch of this collector's life: each new one builds an
        SSL context (the CA bundle, ~50 ms), which ran on the event loop at every fetch of
        every URL. Made once, in a thread. trust_env=False: a proxy configured for the
        outside world must not see requests to a node-local debug endpoint."""
        async with self._client_lock:
            if self._client is None:
                import httpx

                self._client = await asyncio.to_thread(
                    lambda: httpx.AsyncClient(trust_env=False, follow_redirects=False)
                )
            return self._client

    async def _fetch(self, url: str, name: str) -> Profile:
        got = await self._fetch_raw(url)
        return summarize(name, url, got.start, got.end, got.stacks, max_stacks=self.max_stacks)

    def _keep(self, url: str, got: _Fetched) -> Profile:
        """The URL's profiles within PPROF_SPAN seconds of the newest one's end, merged
        into one; one that overlaps a newer one is dropped (a server profiles one at a time,
        so an overlap is the same samples served again)."""
        kept = [
            f for f in self._pprof_kept.get(url, []) if f.start >= got.end - PPROF_SPAN and f.end <= got.start
        ]
        kept.append(got)
        self._pprof_kept[url] = kept
        return summarize(
            f"pprof {url}",
            url,
            min(f.start for f in kept),
            max(f.end for f in kept),
            [s for f in kept for s in f.stacks],
            max_stacks=self.max_stacks,
        )

    async def _pprof_loop(self, url: str) -> None:
        await _load_pprof()
        from .pprof import PprofError

        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                self._pprof[url] = self._keep(url, await self._fetch_raw(url))
                self._status[url] = SourceStatus(url, "ok", "", self._clock())
            except asyncio.CancelledError:
                raise
            except PprofError as exc:
                self._status[url] = SourceStatus(url, "error", str(exc), self._status[url].last_ok)
            except Exception as exc:
                log.debug("pprof %s failed", url, exc_info=True)
                self._status[url] = SourceStatus(
                    url, "error", f"{type(exc).__name__}: {exc}", self._status[url].last_ok
                )
            # From start to start: pprof_every == pprof_seconds profiles without a gap.
            await asyncio.sleep(max(0.0, began + self.pprof_every - loop.time()))

    # --- on demand --------------------------------------------------------------------

    async def capture(self, *, url: str | None = None, seconds: float | None = None, **want: str) -> Profile:
        """Capture a profile now: from a pprof URL, or from the BPF sampler for the
        samples whose tags match `want` (e.g. pid="1234" or service="checkout").

        Raises pprof.PprofError or SourceUnavailable with the reason when it cannot.
        """
        seconds = self.pprof_seconds if seconds is None else seconds
        if url is not None:
            prof = await self._fetch(url, f"capture pprof {url}")
            self._captures.append(prof)
            return prof
        if not want:
            raise ValueError("capture needs a url or at least one tag to match (pid=..., service=...)")
        if self._bpf_start is not None and not self._bpf_start.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._bpf_start)  # still compiling: the capture starts after
        if not self._bpf_state():
            st = self._status.get("bpf")
            raise SourceUnavailable(
                f"BPF sampler not running: {st.message if st else 'off'}", "run `sudo ebpftop`"
            )
        now = self._clock()
        label = " ".join(f"{k}={v}" for k, v in sorted(want.items()))
        done: asyncio.Future[Profile] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(dict(want), f"capture {label}", now, now + seconds, done=done))
        return await done

    def _feed_pending(self, now: float, counts: dict[StackKey, int]) -> None:
        for p in list(self._pending):
            for s in filter_stacks(stacks_from_counts(counts), **p.want):
                p.counts[(s.tags, s.frames)] += s.count
            if now >= p.deadline:
                self._pending.remove(p)
                prof = summarize(
                    p.name, "bpf", p.start, now, stacks_from_counts(p.counts), max_stacks=self.max_stacks
                )
                self._captures.append(prof)
                if p.done is not None and not p.done.done():
                    p.done.set_result(prof)


def from_settings(settings: Settings, pods: SharedPods | None = None) -> ProfilesCollector:
    return ProfilesCollector(
        pods=pods,
        hz=settings.profile_hz,
        pprof_urls=settings.pprof_urls,
        pprof_seconds=settings.pprof_seconds,
        pprof_every=settings.pprof_every,
        interval=settings.refresh,
    )


__all__ = ["GROUP_KEYS", "ProfilesCollector", "from_settings"]


async def _load_pprof() -> None:
    """Import the pprof reader (httpx, and behind it click, pygments and rich when
    installed; protobuf) in a thread: ~0.4 s of CPU that, on the event loop, held up the
    dashboard's first frames and the canary's verdict."""
    if PPROF_MODULE not in sys.modules:
        await asyncio.to_thread(importlib.import_module, PPROF_MODULE)
