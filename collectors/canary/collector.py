"""The canary source: every interval, query Prometheus for each service's canary and
stable variants, judge the canary, and publish the numbers with the verdict.

All queries of a sample run concurrently in threads (query.PromClient), each under one
total deadline, so a slow Prometheus delays only this source and never the screen. A
service whose queries all fail keeps its last good numbers, marked stale with their
time; when every query fails the sample fails, and the runner marks the source degraded (with
the age of the last good data) and backs off.

A verdict needs `persist` evaluations in a row; rather than wait that long at start, or
after a gap in evaluations, the evaluations missed are read from Prometheus history (one
range query per template, a step per evaluation interval) and judged by the same
`Evaluator`, oldest first, before the live one. No data in history counts as no data.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ebpftop.core.collector import Collector, SourceUnavailable

from .config import CanaryConfigError, ServiceConfig, load_services_file, validate
from .data import Bucket, CanaryData, DriftTest, ServiceCanary, VariantMetrics
from .exemplars import parse_exemplars, slow_cutoff, slowest
from .query import Answer, PromClient, QueryError, RangeAnswer
from .stats import TEST_NAME, ChiSquare, chi_square_homogeneity, per_bucket
from .verdict import Assessment, Evaluator, Measured, Thresholds, Verdict
from .vet import vet

VARIANTS = ("canary", "stable")
SCALARS = ("p99", "error_ratio", "throughput")
HINT_CONFIG = "fix the [[service]] table in the canary services file (see `ebpftop --help-config`)"


def thresholds_from(settings: Any) -> Thresholds:
    return Thresholds(
        p99_max_s=settings.canary_p99_max,
        error_ratio_max=settings.canary_error_ratio_max,
        p99_ratio_max=settings.canary_p99_ratio_max,
        persist=settings.canary_persist,
        min_requests=settings.canary_min_requests,
    )


def services_from(settings: Any) -> tuple[ServiceConfig, ...]:
    """The services to watch: the services file, or one service with the defaults,
    named as the rollout's service, whose evidence it is.

    Raises CanaryConfigError naming the service and template that is wrong.
    """
    defaults = thresholds_from(settings)
    if settings.canary_services_file:
        return load_services_file(settings.canary_services_file, defaults, window=settings.canary_window)
    svc = ServiceConfig(name=settings.rollout_service, window=settings.canary_window, thresholds=defaults)
    validate(svc, "[canary]")
    return (svc,)


def read_secret(path: str, what: str, key: str, section: str = "canary") -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError as exc:
        raise SourceUnavailable(
            f"cannot read the {what} file {path}: {exc.strerror or exc}", f"check [{section}] {key}"
        ) from None
    if not value:
        raise SourceUnavailable(f"the {what} file {path} is empty", f"put the {what} in {path}")
    return value


def public_url(url: str) -> str:
    """The URL without user:password, fit to show and to record."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _one(answer: Answer, what: str) -> float | None:
    if not answer.samples:
        return None
    if len(answer.samples) > 1:
        raise QueryError(
            "bad_response",
            f"{what} returned {len(answer.samples)} series; "
            "the template must aggregate to one (e.g. sum(...))",
        )
    return answer.samples[0].value


def _le_key(le: str) -> float:
    try:
        return float(le)
    except ValueError:
        raise QueryError("bad_response", f"bucket le={le[:20]!r} is not a number") from None


def _buckets(answer: Answer) -> tuple[Bucket, ...]:
    rows = []
    for s in answer.samples:
        le = s.labels.get("le")
        if le is None:
            raise QueryError(
                "bad_response", "buckets template returned a series without `le`; keep `sum by (le)`"
            )
        rows.append((_le_key(le), le, s.value))
    rows.sort()
    return tuple(Bucket(le, value) for _, le, value in rows)


def drift_test(canary: Sequence[Bucket], stable: Sequence[Bucket]) -> tuple[DriftTest, ChiSquare | None]:
    """The chi-square test on the buckets both variants share.

    Cumulative counts at shared boundaries form a valid coarser histogram, so variants
    built with different bucket layouts are still compared, on the boundaries they share.
    """
    # keyed by value: one client writes le="1", another le="1.0"
    a = {_le_key(x.le): x.count for x in canary}
    b = {_le_key(x.le): x.count for x in stable}
    shared = sorted(set(a) & set(b))
    if not shared:
        return DriftTest(TEST_NAME, note="no latency buckets shared by canary and stable"), None
    counts_a = [c for le in shared if (c := a[le]) is not None]
    counts_b = [c for le in shared if (c := b[le]) is not None]
    if len(counts_a) < len(shared) or len(counts_b) < len(shared):
        return DriftTest(TEST_NAME, note="a latency bucket has no data"), None
    if shared[-1] != math.inf:
        return DriftTest(TEST_NAME, note="no +Inf bucket: the histograms are incomplete"), None
    ra, rb = per_bucket(counts_a), per_bucket(counts_b)
    result = chi_square_homogeneity(ra, rb)
    if result is None:
        note = "too few requests for the test (needs >= 5 expected per bin and >= 2 bins)"
        return DriftTest(TEST_NAME, n_canary=sum(ra), n_stable=sum(rb), note=note), None
    return DriftTest(
        TEST_NAME,
        statistic=result.statistic,
        dof=result.dof,
        p_value=result.p_value,
        effect_size=result.cramers_v,
        bins=result.bins,
        n_canary=result.n_a,
        n_stable=result.n_b,
    ), result


@dataclass
class _Answers:
    """One sample's answers read: values by "variant.metric", and what went wrong."""

    got: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # QueryError kinds, in the order of errors
    # reading history failed: the verdict lacks its head start, but the live numbers stand,
    # so this is said, not counted among the errors that degrade the source
    history_errors: list[str] = field(default_factory=list)


async def _nothing() -> list[str]:
    return []


def _first(errors: Sequence[str]) -> str:
    if not errors:
        return ""
    return errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")


def _read_answers(svc: ServiceConfig, queries: dict[str, str], results: list[Any]) -> _Answers:
    out = _Answers()
    for key, res in zip(queries, results, strict=True):
        variant, metric = key.split(".")
        if isinstance(res, QueryError):
            out.errors.append(f"{variant} {metric}: {res.message}")
            out.kinds.append(res.kind)
            continue
        try:
            if metric == "exemplars":
                data, warn = res
                out.warnings += warn
                out.got[key] = parse_exemplars(data, svc.trace_label)
                continue
            out.warnings += res.warnings
            out.got[key] = _buckets(res) if metric == "buckets" else _one(res, f"template {metric}")
        except QueryError as exc:
            out.errors.append(f"{variant} {metric}: {exc.message}")
            out.kinds.append(exc.kind)
    return out


class CanaryCollector(Collector):
    name = "canary"
    urgent = True  # its first verdict, from history, names a failing canary at once

    def __init__(
        self,
        settings: Any,
        *,
        services: Sequence[ServiceConfig] | None = None,
        client: PromClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.interval = float(settings.canary_interval)
        self._services = tuple(services) if services is not None else None
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._evaluators: dict[str, Evaluator] = {}
        self._last: dict[str, ServiceCanary] = {}
        self._labels: dict[str, str] = {}
        self._templates_checked = False
        self._evaluated: dict[str, float] = {}  # per service, the time of its last evaluation

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if not s.prometheus_url:
            raise SourceUnavailable(
                "Prometheus is not configured",
                "set prometheus_url in [canary] of the config, or pass --prometheus-url",
                off=True,
            )
        if self._services is None:
            try:
                self._services = services_from(s)
            except CanaryConfigError as exc:
                raise SourceUnavailable(str(exc), HINT_CONFIG) from None
        if self._client is None:
            token = (
                read_secret(s.prometheus_token_file, "bearer token", "bearer_token_file")
                if s.prometheus_token_file
                else None
            )
            basic = None
            if s.prometheus_user:
                if not s.prometheus_password_file:
                    raise SourceUnavailable(
                        "[canary] basic_auth_user is set but basic_auth_password_file is not",
                        "set [canary] basic_auth_password_file to a file holding the password",
                    )
                basic = (
                    s.prometheus_user,
                    read_secret(s.prometheus_password_file, "password", "basic_auth_password_file"),
                )
            # In a thread: its imports (requests, urllib3, prometheus_api_client) take a
            # few hundred ms of CPU, which on the event loop held up the first frames.
            self._client = await asyncio.to_thread(
                PromClient,
                s.prometheus_url,
                timeout=s.canary_timeout,
                token=token,
                basic_auth=basic,
                ca_file=s.prometheus_ca_file,
            )
        for svc in self._services:
            self._evaluator(svc)

    async def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    # --- one sample -------------------------------------------------------------------

    def _started(self) -> tuple[PromClient, tuple[ServiceConfig, ...]]:
        assert self._client is not None and self._services is not None, "start() first"
        return self._client, self._services

    async def collect(self) -> CanaryData:
        assert self._client is not None and self._services is not None, "start() first"
        # The templates are checked beside the first sample, not before it: a round trip
        # less before the first verdict. One Prometheus rejects still stops the source.
        checking = None if self._templates_checked else asyncio.ensure_future(self._check_templates())
        at = self._clock()
        try:
            results = await asyncio.gather(*(self._sample_service(svc, at) for svc in self._services))
        except asyncio.CancelledError:
            if checking is not None:
                checking.cancel()
            raise
        except Exception:
            if checking is not None:
                await checking  # a template Prometheus rejects says more than the sample's failure
            raise
        if checking is not None:
            await checking
        services = tuple(svc for svc, _, _ in results)
        if not any(fresh for _, fresh, _ in results):
            kind = next((k for _, _, k in results if k), "connection")
            first = next((e for svc in services for e in svc.errors), "no answer")
            raise QueryError(kind, f"every query failed ({public_url(self._client.url)}): {first}")
        return CanaryData(public_url(self._client.url), services)

    def degraded_reason(self, payload: CanaryData) -> str:
        issues = []
        for svc in payload.services:
            if svc.stale:
                issues.append(f"{svc.name}: stale, {svc.errors[0] if svc.errors else 'no fresh data'}")
            elif svc.errors:
                issues.append(f"{svc.name}: {_first(svc.errors)}")
            for w in svc.warnings[:1]:
                issues.append(f"{svc.name}: Prometheus warns: {w}")
        return "; ".join(issues)

    async def _check_templates(self) -> None:
        """Ask Prometheus to parse every template once; a template it rejects stops the
        source with the service and template named."""
        client, services = self._started()
        jobs = []
        for svc in services:
            label = svc.variant_labels()[0]
            for name in svc.templates():
                jobs.append((svc, name, client.format_query(svc.render(name, "canary", label))))
        results = await asyncio.gather(*(job for _, _, job in jobs), return_exceptions=True)
        for (svc, name, _), res in zip(jobs, results, strict=True):
            if isinstance(res, QueryError) and res.kind == "api" and res.error_type == "bad_data":
                raise SourceUnavailable(
                    f"canary service {svc.name!r}, template {name} does not parse: {res.message}", HINT_CONFIG
                )
        for (svc, name, _), res in zip(jobs, results, strict=True):
            if isinstance(res, QueryError) and res.kind == "api":
                # execution, timeout, unavailable...: Prometheus' trouble, not the template's
                raise QueryError(
                    res.kind,
                    f"Prometheus could not check canary service {svc.name!r}, template {name}: {res.message}",
                    res.error_type,
                )
        for res in results:
            if isinstance(res, QueryError) and res.kind == "http" and res.message.startswith("HTTP 404"):
                continue  # a Prometheus without format_query: queries will say it instead
            if isinstance(res, BaseException):
                raise res
        self._templates_checked = True

    async def _variant_label(self, svc: ServiceConfig, at: float) -> tuple[str | None, list[QueryError]]:
        """The label telling this service's variants apart; tried in order, remembered."""
        if svc.name in self._labels:
            return self._labels[svc.name], []
        candidates = svc.variant_labels()
        if len(candidates) == 1:
            self._labels[svc.name] = candidates[0]
            return candidates[0], []
        answers = await asyncio.gather(
            *(self._started()[0].query(svc.render("throughput", "canary", lbl), at) for lbl in candidates),
            return_exceptions=True,
        )
        errors = []
        for lbl, ans in zip(candidates, answers, strict=True):
            if isinstance(ans, Answer) and ans.samples:
                self._labels[svc.name] = lbl
                return lbl, []
            if isinstance(ans, QueryError):
                errors.append(QueryError(ans.kind, f"variant label {lbl}: {ans.message}"))
            elif isinstance(ans, BaseException):
                raise ans
        return None, errors

    async def _sample_service(self, svc: ServiceConfig, at: float) -> tuple[ServiceCanary, bool, str]:
        """This service's sample, whether it is fresh (some query answered), and the
        kind of its first failure ("" when none)."""
        label, failures = await self._variant_label(svc, at)
        if label is None:
            if failures:
                return self._failed(svc, [f.message for f in failures]), False, failures[0].kind
            note = " or ".join(f'{lbl}="{svc.canary}"' for lbl in svc.variant_labels())
            return self._no_variant(svc, at, f"no series with {note}"), True, ""
        missed = self._missed(svc, at)
        # History and the live queries in one round trip; history is judged first (in
        # _replay, before this gather returns), the live evaluation after, as in time.
        history_errors, (queries, results) = await asyncio.gather(
            self._replay(svc, label, missed) if missed else _nothing(), self._query_all(svc, label, at)
        )
        answers = _read_answers(svc, queries, results)
        if not answers.got:
            return self._failed(svc, answers.errors), False, answers.kinds[0] if answers.kinds else ""
        answers.history_errors = history_errors
        result = self._judge(svc, label, at, queries, answers)
        self._evaluated[svc.name] = at
        self._last[svc.name] = result
        return result, True, ""

    def _evaluator(self, svc: ServiceConfig) -> Evaluator:
        return self._evaluators.setdefault(svc.name, Evaluator(svc.thresholds))

    def _missed(self, svc: ServiceConfig, at: float) -> tuple[float, ...]:
        """The evaluation times before `at` to read from history: the persistence window
        at start; after a gap, the evaluations missed, at most that window (a longer gap
        breaks the streaks, as nobody knows what happened in it)."""
        window = svc.thresholds.persist - 1
        if not self.settings.canary_history or window < 1:
            return ()
        last = self._evaluated.get(svc.name)
        # a sample late by less than an interval missed nothing: only whole intervals count
        missed = window if last is None else math.floor((at - last) / self.interval + 1e-6) - 1
        if missed <= 0:
            return ()
        if missed > window:
            self._evaluator(svc).reset()
            missed = window
        return tuple(at - k * self.interval for k in range(missed, 0, -1))

    async def _replay(self, svc: ServiceConfig, label: str, times: tuple[float, ...]) -> list[str]:
        """Judge the evaluations at `times` (oldest first) from Prometheus history, as the
        live path would have; what went wrong, to report with the live sample."""
        client = self._started()[0]
        queries = {
            f"{variant}.{metric}": svc.render(metric, variant, label)
            for variant in VARIANTS
            for metric in (*SCALARS, "buckets")
        }
        jobs = [client.query_range(q, times[0], times[-1], self.interval) for q in queries.values()]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException) and not isinstance(res, QueryError):
                raise res
        errors: dict[str, None] = {}
        for t in times:
            at_t = [r.at(t) if isinstance(r, RangeAnswer) else r for r in results]
            answers = _read_answers(svc, queries, at_t)
            errors.update(dict.fromkeys(answers.errors))
            if answers.got:  # nothing answered is no evaluation, as live
                self._assess(svc, answers, history_at=t)
        # the times judged are not missed again, even if the live sample fails
        self._evaluated[svc.name] = times[-1]
        return list(errors)

    async def _query_all(self, svc: ServiceConfig, label: str, at: float) -> tuple[dict[str, str], list[Any]]:
        """Every query of one sample at once: {"variant.metric": PromQL} and the answers in
        that order (a QueryError where one failed; anything else raised is a bug, raised)."""
        client = self._started()[0]
        queries: dict[str, str] = {}
        jobs: list[Awaitable[Any]] = []
        for variant in VARIANTS:
            for metric in (*SCALARS, "buckets"):
                promql = svc.render(metric, variant, label)
                queries[f"{variant}.{metric}"] = promql
                jobs.append(client.query(promql, at))
        selector = svc.render("exemplars", "canary", label)
        queries["canary.exemplars"] = selector
        jobs.append(client.query_exemplars(selector, at - svc.window_s, at))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException) and not isinstance(res, QueryError):
                raise res
        return queries, results

    def _judge(
        self, svc: ServiceConfig, label: str, at: float, queries: dict[str, str], answers: _Answers
    ) -> ServiceCanary:
        """The verdict on what the queries answered, with the evidence behind it."""
        got = answers.got
        canary, stable, drift, verdict = self._assess(svc, answers)
        bounds = [_le_key(b.le) for b in canary.buckets]
        cutoff = slow_cutoff(canary.p99_s, bounds, svc.thresholds.p99_max_s)
        return ServiceCanary(
            name=svc.name,
            verdict=verdict.verdict,
            reason=verdict.reason,
            metrics=verdict.metrics,
            canary=canary,
            stable=stable,
            drift=drift,
            exemplars=slowest(got.get("canary.exemplars", []), cutoff),
            variant_label=label,
            window=svc.window,
            evaluated_at=at,
            history_at=self._evaluator(svc).history_times(),
            history_note=_first(answers.history_errors),
            warnings=tuple(dict.fromkeys(answers.warnings)),
            errors=tuple(answers.errors),
            queries=queries,
        )

    def _assess(
        self, svc: ServiceConfig, answers: _Answers, *, history_at: float | None = None
    ) -> tuple[VariantMetrics, VariantMetrics, DriftTest, Assessment]:
        """Vet the numbers, run the distribution test and judge: the one judging path,
        for live and historical evaluations alike."""
        problems: dict[str, str] = {}
        variants = {}
        for v in VARIANTS:
            variants[v], found = vet(v, self._variant_metrics(svc, v, answers.got))
            problems.update(found)
        canary, stable = variants["canary"], variants["stable"]
        broken = problems.get("canary.buckets") or problems.get("stable.buckets")
        if broken:
            drift, chi = DriftTest(TEST_NAME, note=broken), None
        else:
            drift, chi = drift_test(canary.buckets, stable.buckets)
        measured = Measured(
            canary_p99_s=canary.p99_s,
            stable_p99_s=stable.p99_s,
            canary_error_ratio=canary.error_ratio,
            canary_requests=canary.requests,
            drift=chi,
            drift_note=drift.note,
            problems=problems,
        )
        return canary, stable, drift, self._evaluator(svc).evaluate(measured, history_at=history_at)

    def _variant_metrics(self, svc: ServiceConfig, variant: str, got: dict[str, Any]) -> VariantMetrics:
        buckets = got.get(f"{variant}.buckets", ())
        total = next((b.count for b in buckets if b.le == "+Inf" or _le_key(b.le) == math.inf), None)
        return VariantMetrics(
            variant=svc.canary if variant == "canary" else svc.stable,
            p99_s=got.get(f"{variant}.p99"),
            error_ratio=got.get(f"{variant}.error_ratio"),
            rps=got.get(f"{variant}.throughput"),
            requests=total,
            buckets=buckets,
        )

    def _failed(self, svc: ServiceConfig, errors: list[str]) -> ServiceCanary:
        """Nothing answered for this service: the last good numbers, marked stale."""
        last = self._last.get(svc.name)
        if last is not None:
            return replace(last, stale=True, errors=tuple(errors), warnings=())
        return self._empty(svc, None, "no data yet: " + (errors[0] if errors else "no answer"), errors)

    def _no_variant(self, svc: ServiceConfig, at: float, why: str) -> ServiceCanary:
        return self._empty(svc, at, why, [])

    def _empty(self, svc: ServiceConfig, at: float | None, why: str, errors: list[str]) -> ServiceCanary:
        # a throwaway evaluator: no data must not touch the service's breach counts
        assessment = Evaluator(svc.thresholds).evaluate(Measured(None, None, None, None, None, why))
        return ServiceCanary(
            name=svc.name,
            verdict=Verdict.NO_DATA,
            reason=why,
            metrics=assessment.metrics,
            canary=VariantMetrics(svc.canary),
            stable=VariantMetrics(svc.stable),
            drift=DriftTest(TEST_NAME, note=why),
            window=svc.window,
            evaluated_at=at,
            errors=tuple(errors),
        )
