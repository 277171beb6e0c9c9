"""Prometheus HTTP API calls, off the event loop, each bounded by one total deadline.

Calls go through `PromClient.get`, not `custom_query`, which drops what the pane must
show (Prometheus `warnings`, `errorType`/`error`); the client's retries are off because
the collector runner already backs off. Every failure is a one-line `QueryError`;
NaN and +-Inf become None (no data, never zero).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ebpftop.core.untrusted import clean

if TYPE_CHECKING:
    import requests

# requests, prometheus_api_client and urllib3 are imported where a client is made or a
# call fails, not here: the dashboard imports this module (errors, parsing) before its
# first frame, and those imports cost more than the rest of its start.

MAX_BODY = 16 * 1024 * 1024  # a canary answer is a handful of series
_SNIPPET = 80


class QueryError(Exception):
    """One API call failed. `kind`: connection, timeout, http, bad_response, api.

    For "api", `error_type` is Prometheus' errorType (bad_data, execution, timeout,
    unavailable...): only bad_data says the query itself is wrong."""

    def __init__(self, kind: str, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.error_type = error_type


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float | None  # None for NaN/Inf: no data


@dataclass(frozen=True)
class Answer:
    samples: tuple[Sample, ...]
    warnings: tuple[str, ...]


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")


def to_value(raw: Any) -> float | None:
    """A Prometheus sample value ("1.5", "NaN", "+Inf") -> float, or None when not finite."""
    if isinstance(raw, bool):
        raise QueryError("bad_response", f"sample value {raw!r} is not a number")
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise QueryError("bad_response", f"sample value {str(raw)[:40]!r} is not a number") from None
    return x if math.isfinite(x) else None


def parse_envelope(status: int, body: bytes) -> tuple[Any, tuple[str, ...]]:
    """An HTTP answer from /api/v1/* -> (data, warnings), or QueryError saying why not."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        html = body.lstrip()[:1] == b"<"
        if status != 200:
            if html:
                raise QueryError("http", f"HTTP {status} with an HTML page ({_snippet(body)!r})") from None
            raise QueryError("http", f"HTTP {status}: {_snippet(body) or 'empty body'}") from None
        if html:
            what = (
                f"an HTML page ({_snippet(body)!r}), not the Prometheus API: "
                "wrong URL, or a proxy/login page?"
            )
        elif not body.strip():
            what = "an empty body"
        else:
            what = f"a body that is not JSON ({exc.__class__.__name__}: {str(exc)[:60]}; truncated?)"
        raise QueryError("bad_response", f"Prometheus answered {what}") from None
    if not isinstance(obj, dict):
        raise QueryError(
            "bad_response", f"HTTP {status}: answer is a JSON {type(obj).__name__}, not an object"
        )
    warnings = tuple(str(w) for key in ("warnings", "infos") for w in (obj.get(key) or ()) if w is not None)
    if obj.get("status") == "error":
        kind = clean(obj.get("errorType") or "error", 40)
        error = clean(obj.get("error") or "no message", 300)
        raise QueryError("api", f"HTTP {status}, {kind}: {error}", kind)
    if status != 200:
        raise QueryError("http", f"HTTP {status}: {_snippet(body)}")
    if obj.get("status") != "success" or "data" not in obj:
        raise QueryError("bad_response", f'answer has no status "success" and data: {_snippet(body)}')
    return obj["data"], warnings


def parse_result(data: Any) -> tuple[Sample, ...]:
    """`data` of an instant query -> samples (vector or scalar)."""
    if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
        raise QueryError("bad_response", "query answer has no resultType/result")
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        if not isinstance(result, list) or len(result) != 2:
            raise QueryError("bad_response", "scalar result is not [time, value]")
        return (Sample({}, to_value(result[1])),)
    if kind != "vector":
        raise QueryError("bad_response", f"expected an instant vector, got a {kind}")
    if not isinstance(result, list):
        raise QueryError("bad_response", "vector result is not a list")
    out = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("value"), list) or len(item["value"]) != 2:
            raise QueryError("bad_response", "vector sample is not {metric, value: [time, value]}")
        out.append(Sample(_labels(item), to_value(item["value"][1])))
    return tuple(out)


@dataclass(frozen=True)
class RangeAnswer:
    """A range query's series, each point keyed by its time in whole milliseconds (the
    precision Prometheus answers with), so a point is found by the time asked for."""

    series: tuple[tuple[dict[str, str], dict[int, float | None]], ...]
    warnings: tuple[str, ...]

    def at(self, t: float) -> Answer:
        """What an instant query at `t` would have answered: the series with a point there
        (within a millisecond: the times asked for went over the wire as decimals)."""
        keys = (ms(t), ms(t) - 1, ms(t) + 1)
        samples = []
        for labels, points in self.series:
            key = next((k for k in keys if k in points), None)
            if key is not None:
                samples.append(Sample(labels, points[key]))
        return Answer(tuple(samples), self.warnings)


def ms(t: float) -> int:
    return round(t * 1000)


def _labels(item: dict[str, Any]) -> dict[str, str]:
    labels = item.get("metric") or {}
    if not isinstance(labels, dict):
        raise QueryError("bad_response", "sample labels are not an object")
    return {str(k): str(v) for k, v in labels.items()}


def parse_matrix(data: Any) -> tuple[tuple[dict[str, str], dict[int, float | None]], ...]:
    """`data` of a range query -> (labels, {time in ms: value}) per series."""
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "matrix"
        or not isinstance(data.get("result"), list)
    ):
        raise QueryError("bad_response", "range query answer is not a matrix")
    out = []
    for item in data["result"]:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise QueryError("bad_response", "matrix series is not {metric, values: [[time, value], ...]}")
        points: dict[int, float | None] = {}
        for point in values:
            if not isinstance(point, list) or len(point) != 2 or not isinstance(point[0], (int, float)):
                raise QueryError("bad_response", "matrix point is not [time, value]")
            points[ms(point[0])] = to_value(point[1])
        out.append((_labels(item), points))
    return tuple(out)


def session(*, token: str | None = None, ca_file: str | None = None) -> requests.Session:
    import requests

    s = requests.Session()
    if ca_file:
        s.verify = ca_file
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


class PromClient:
    """Async facade over one Prometheus; blocking HTTP runs in its own small pool."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        workers: int = 16,
    ) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        from ..deadline import DaemonExecutor, DeadlineAdapter, Deadlines

        self.url = url.rstrip("/")
        self.timeout = timeout
        # No retries inside a call (see module docstring); follow a few redirects.
        # read=False: a read timeout surfaces as requests' ReadTimeout, not a
        # ConnectionError wrapping MaxRetryError.
        retry = Retry(total=None, connect=0, read=False, status=0, other=0, redirect=3)
        # our own handle on the session PrometheusConnect uses (its `_session` is private)
        self._session = session(token=token, ca_file=ca_file)
        self._conn = PrometheusConnect(
            url=self.url,
            auth=basic_auth,
            session=self._session,
            timeout=timeout,
            retry=retry,
        )
        # one pooled connection per worker (the default pool of 10 would drop some);
        # over PrometheusConnect's own adapter for the URL, and for both schemes, so a
        # redirect elsewhere is under the deadline too
        adapter = DeadlineAdapter(max_retries=retry, pool_maxsize=workers)
        for prefix in (self.url, "http://", "https://"):
            self._session.mount(prefix, adapter)
        # A stalled Prometheus holds a thread until the deadline; a private pool keeps
        # that from starving other collectors' to_thread work.
        self._pool = DaemonExecutor(workers, "prometheus")
        self._deadlines = Deadlines()
        self._closed = False

    def get(self, path: str, params: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """Blocking GET of /api/v1/<path> -> (data, warnings). Whole call <= timeout."""
        with self._deadlines.start(self.timeout) as deadline:
            status, body = self._fetch(path, params, deadline)
        return parse_envelope(status, body)

    def _fetch(self, path: str, params: dict[str, Any], deadline: Any) -> tuple[int, bytes]:
        import requests

        conn = self._conn
        late = f"no complete answer within {self.timeout:g} s"
        try:
            resp = self._session.get(
                f"{self.url}/api/v1/{path}",
                params=params,
                headers=conn.headers,
                auth=conn.auth,
                # explicit, or REQUESTS_CA_BUNDLE in the environment overrides the CA file
                verify=self._session.verify,
                timeout=max(0.001, deadline.remaining()),
                stream=True,
            )
        except requests.exceptions.RequestException as exc:
            if deadline.expired or isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc):
                raise QueryError("timeout", late) from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise QueryError("connection", f"TLS failed: {_reason(exc)}") from None
            if isinstance(exc, requests.exceptions.ConnectionError):
                raise QueryError("connection", f"cannot connect: {_reason(exc)}") from None
            raise QueryError("connection", f"request failed: {_reason(exc)}") from None
        try:
            body = bytearray()
            for chunk in resp.iter_content(65536):
                body += chunk
                if len(body) > MAX_BODY:
                    raise QueryError("bad_response", f"answer larger than {MAX_BODY // (1024 * 1024)} MiB")
        except requests.exceptions.RequestException as exc:
            if (
                deadline.expired
                or isinstance(exc, requests.exceptions.Timeout)
                or "timed out" in str(exc).lower()
            ):
                raise QueryError("timeout", late) from None
            raise QueryError("connection", f"connection broke mid-answer: {_reason(exc)}") from None
        finally:
            resp.close()
        if deadline.expired:  # cut short: what arrived is not the whole answer
            raise QueryError("timeout", late)
        return resp.status_code, bytes(body)

    async def call(self, path: str, params: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
        if self._closed:
            raise QueryError("connection", "client closed")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self.get, path, params)
        try:
            # the request has its own deadline once a worker runs it; this one also
            # covers the wait for a free worker, and keeps the loop free either way
            return await asyncio.wait_for(fut, 2 * self.timeout + 1.0)
        except TimeoutError:
            raise QueryError("timeout", f"no answer within {self.timeout:g} s") from None

    async def query(self, promql: str, at: float | None = None) -> Answer:
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data, warnings = await self.call("query", params)
        return Answer(parse_result(data), warnings)

    async def query_range(self, promql: str, start: float, end: float, step: float) -> RangeAnswer:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        data, warnings = await self.call("query_range", params)
        return RangeAnswer(parse_matrix(data), warnings)

    async def format_query(self, promql: str) -> str:
        """Prometheus' own parse of `promql` (QueryError kind "api" when it does not parse)."""
        data, _ = await self.call("format_query", {"query": promql})
        return str(data)

    async def query_exemplars(self, selector: str, start: float, end: float) -> tuple[Any, tuple[str, ...]]:
        return await self.call(
            "query_exemplars", {"query": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadlines.cut_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()  # PrometheusConnect.close (0.7) does only this


def _reason(exc: BaseException) -> str:
    """The innermost useful part of a requests/urllib3 error, e.g. "Connection refused"."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "certificate verify failed",
        "Connection reset by peer",
        "Temporary failure in name resolution",
    ):
        if marker in text:
            return marker
    return text[:120]
