"""pprof endpoints (Go's net/http/pprof): fetch with a time and size limit, then parse.

The body is gzip'd protobuf (profile.proto). It is decompressed as it streams in with a
cap, so a gzip bomb stops at the cap instead of filling memory, and every defect
(not gzip, truncated, not a profile, indices that point nowhere) becomes a PprofError
that says what is wrong and where, never a crash and never a partial profile.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
from google.protobuf.message import DecodeError as ProtoDecodeError

from .model import StackSample, make_tags

MAX_BYTES = 32 << 20  # decompressed (and compressed) size cap
MAX_LABEL = 256  # characters kept of a label key or value: tags are for grouping, not storage
MAX_NAME = 1024  # characters kept of a function name
CHUNK = 64 << 10
GZIP_MAGIC = b"\x1f\x8b"


class PprofError(Exception):
    """A pprof body or endpoint could not be used; the message says why."""


# --- bytes ----------------------------------------------------------------------------


class GunzipCapped:
    """Streaming gunzip that refuses to produce more than `limit` bytes."""

    def __init__(self, limit: int = MAX_BYTES) -> None:
        self.limit = limit
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._out = bytearray()
        self._seen = 0

    def feed(self, chunk: bytes) -> None:
        if self._seen == 0 and chunk:
            head = chunk[:2]
            if not GZIP_MAGIC.startswith(head) or (len(head) == 2 and head != GZIP_MAGIC):
                raise PprofError(
                    f"not gzip: body starts with {chunk[:8]!r}, a pprof profile is gzip'd protobuf"
                )
        self._seen += len(chunk)
        if self._d.eof:
            return  # trailing bytes after the gzip member are ignored, as gzip(1) warns and goes on
        try:
            data = chunk
            while data:
                room = self.limit - len(self._out)
                out = self._d.decompress(data, room + 1)
                self._out += out
                if len(self._out) > self.limit:
                    raise PprofError(f"too large: more than {self.limit >> 20} MiB once decompressed")
                data = self._d.unconsumed_tail
                if self._d.eof:
                    break
        except zlib.error as exc:
            raise PprofError(f"corrupt gzip after {self._seen} bytes: {exc}") from None

    def finish(self) -> bytes:
        if self._seen == 0:
            raise PprofError("empty body")
        if not self._d.eof:
            raise PprofError(
                f"truncated gzip: the stream ends after {self._seen} bytes without its end marker"
            )
        return bytes(self._out)


def gunzip(body: bytes, limit: int = MAX_BYTES) -> bytes:
    g = GunzipCapped(limit)
    for i in range(0, len(body), CHUNK):
        g.feed(body[i : i + CHUNK])
    return g.finish()


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class PprofProfile:
    sample_types: tuple[tuple[str, str], ...]  # (type, unit), e.g. ("cpu", "nanoseconds")
    period_type: tuple[str, str]
    period: int
    time_nanos: int
    duration_nanos: int
    stacks: tuple[StackSample, ...]  # one per pprof sample, root-first frames

    @property
    def total_samples(self) -> int:
        return sum(s.count for s in self.stacks)

    @property
    def total_cpu_ns(self) -> int | None:
        ns = [s.cpu_ns for s in self.stacks if s.cpu_ns is not None]
        return sum(ns) if ns else None


def _profile_module() -> ModuleType:
    from . import profile_pb2  # generated; imported late so a missing protobuf says so here

    return profile_pb2


def parse(data: bytes, source: str = "") -> PprofProfile:
    """A decompressed profile.proto message -> PprofProfile, checked end to end."""
    pb = _profile_module()
    prof = pb.Profile()
    try:
        prof.ParseFromString(data)
    except ProtoDecodeError as exc:
        raise PprofError(f"not a pprof profile: protobuf decode failed ({exc})") from None
    strings = prof.string_table
    if not strings or strings[0] != "":
        raise PprofError('not a pprof profile: string_table is empty or does not start with ""')
    if not prof.sample_type:
        raise PprofError("not a pprof profile: no sample_type")

    def s(index: int, where: str) -> str:
        if not 0 <= index < len(strings):
            raise PprofError(f"{where}: string index {index} out of range (table has {len(strings)})")
        text: str = strings[index]
        return text

    types = tuple(
        (s(v.type, f"sample_type[{i}].type"), s(v.unit, f"sample_type[{i}].unit"))
        for i, v in enumerate(prof.sample_type)
    )
    count_i = next((i for i, (t, u) in enumerate(types) if u == "count"), 0)
    ns_i = next((i for i, (t, u) in enumerate(types) if u == "nanoseconds"), None)

    functions: dict[int, str] = {}
    for i, f in enumerate(prof.function):
        name = s(f.name, f"function[{i}].name") or s(f.system_name, f"function[{i}].system_name")
        functions[f.id] = (name or "[unknown]")[:MAX_NAME]
    locations: dict[int, tuple[str, ...]] = {}
    for i, loc in enumerate(prof.location):
        names = []
        for j, line in enumerate(loc.line):  # innermost inlined function first
            if line.function_id not in functions:
                raise PprofError(
                    f"location[{i}].line[{j}]: function id {line.function_id} not in the profile"
                )
            names.append(functions[line.function_id])
        locations[loc.id] = tuple(names) if names else (f"0x{loc.address:x}",)

    stacks = []
    base = (("source", source),) if source else ()
    for i, sample in enumerate(prof.sample):
        if len(sample.value) != len(types):
            raise PprofError(f"sample[{i}]: {len(sample.value)} values for {len(types)} sample types")
        leaf_first: list[str] = []
        for lid in sample.location_id:
            if lid not in locations:
                raise PprofError(f"sample[{i}]: location id {lid} not in the profile")
            leaf_first.extend(locations[lid])
        labels: dict[str, list[str]] = {}
        for j, label in enumerate(sample.label):
            key = s(label.key, f"sample[{i}].label[{j}].key")
            if label.str:
                value = s(label.str, f"sample[{i}].label[{j}].str")
            else:
                unit = s(label.num_unit, f"sample[{i}].label[{j}].num_unit")
                value = f"{label.num} {unit}" if unit else str(label.num)
            labels.setdefault(key[:MAX_LABEL], []).append(value)
        tags = make_tags(base + tuple((k, ",".join(v)[:MAX_LABEL]) for k, v in labels.items()))
        stacks.append(
            StackSample(
                frames=tuple(reversed(leaf_first)),
                count=sample.value[count_i],
                tags=tags,
                cpu_ns=sample.value[ns_i] if ns_i is not None else None,
            )
        )
    pt = prof.period_type
    return PprofProfile(
        sample_types=types,
        period_type=(s(pt.type, "period_type.type"), s(pt.unit, "period_type.unit")),
        period=prof.period,
        time_nanos=prof.time_nanos,
        duration_nanos=prof.duration_nanos,
        stacks=tuple(stacks),
    )


def parse_body(body: bytes, source: str = "", limit: int = MAX_BYTES) -> PprofProfile:
    """A gzip'd pprof body as served or saved -> PprofProfile."""
    return parse(gunzip(body, limit), source)


# --- fetching -------------------------------------------------------------------------


def profile_url(url: str, seconds: float) -> str:
    """The CPU profile URL for what the user gave: a base URL gets
    /debug/pprof/profile appended; `seconds` is added unless the URL sets it."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if path in ("", "/"):
        path = "/debug/pprof/profile"
    elif path.rstrip("/").endswith("/debug/pprof"):
        path = path.rstrip("/") + "/profile"
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if "seconds" not in query:
        query["seconds"] = [str(max(1, round(seconds)))]
    return urllib.parse.urlunsplit(parts._replace(path=path, query=urllib.parse.urlencode(query, doseq=True)))


async def fetch(
    url: str,
    *,
    seconds: float = 5.0,
    timeout: float = 5.0,
    limit: int = MAX_BYTES,
    client: httpx.AsyncClient | None = None,
) -> bytes:
    """Fetch a CPU profile; return it decompressed. The whole exchange may take at most
    `seconds` (the server profiles that long before answering) plus `timeout`."""
    full = profile_url(url, seconds)
    own = client is None
    # trust_env=False: a proxy configured for the outside world must not see
    # requests to a node-local debug endpoint.
    http = httpx.AsyncClient(trust_env=False, follow_redirects=False) if client is None else client
    t = httpx.Timeout(timeout, read=seconds + timeout)
    g = GunzipCapped(limit)
    try:
        async with asyncio.timeout(seconds + timeout):
            async with http.stream("GET", full, timeout=t, headers={"Accept-Encoding": "identity"}) as resp:
                if resp.status_code != 200:
                    text = (await resp.aread())[:300].decode("utf-8", "replace").strip()
                    raise PprofError(f"HTTP {resp.status_code} from {full}: {text or resp.reason_phrase}")
                size = resp.headers.get("content-length")
                if size and size.isdigit() and int(size) > limit:
                    raise PprofError(f"too large: the server announces {int(size)} bytes (limit {limit})")
                async for chunk in resp.aiter_raw(CHUNK):
                    g.feed(chunk)
    except TimeoutError:
        raise PprofError(f"timed out after {seconds + timeout:g} s waiting for {full}") from None
    except httpx.TimeoutException as exc:
        raise PprofError(f"timed out ({type(exc).__name__}) waiting for {full}") from None
    except httpx.HTTPError as exc:
        raise PprofError(f"cannot fetch {full}: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            await http.aclose()
    return g.finish()


async def fetch_profile(url: str, **kw: Any) -> PprofProfile:
    return parse(await fetch(url, **kw), source=url)
