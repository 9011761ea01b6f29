"""Prometheus metrics of the API (names are the contract with the dashboards).

Route labels are templates (``/users/{user_id}/churn-risk``), never raw paths,
so label cardinality stays bounded.

Several uvicorn workers each count their own requests, and a scrape reaches one
of them: the counts are kept in prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, one directory shared by the workers of one
``churn serve``) and every scrape merges them all. prometheus_client picks that
mode when it is imported, from the environment (``import feast`` sets a private
directory when none is set); ``exposition`` follows whatever mode is in force.
"""

from __future__ import annotations

import collections
import os
import time
from bisect import bisect_left
from collections.abc import Sequence
from functools import cache
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from online_api.schemas import AnswerStatus

PREFIX = "churn_api_"
# A service that answers in about a millisecond needs buckets below it.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
ERROR_KINDS = ("not_found", "stale_features", "store_unavailable", "no_model", "unauthorized",
               "batch_too_large")  # fmt: skip
ANSWER_STATUSES: tuple[str, ...] = get_args(AnswerStatus)


class ApiMetrics:
    """The API's metrics; one set per process (``api_metrics()``), shared by its apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "churn_api_requests", "Requests by route template and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "churn_api_request_seconds", "Request latency", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.fetch = Histogram(
            "churn_api_online_fetch_seconds", "Online-store fetch latency",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference = Histogram(
            "churn_api_inference_seconds", "Model inference latency (score and factors)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.score = Histogram(
            "churn_api_churn_risk", "Served churn risk",
            buckets=tuple(i / 20 for i in range(1, 21)), registry=r,
        )  # fmt: skip
        self.bands = Counter("churn_api_risk_band", "Served risk bands", ["band"], registry=r)
        self.answers = Counter(
            "churn_api_answers", "Users answered, by status: scored (a risk) or lapsed "
            "(outside the scored population, no risk)", ["status"], registry=r,
        )  # fmt: skip
        for status in ANSWER_STATUSES:  # both exported from the start: rate() needs a zero
            self.answers.labels(status)
        self.feature_age = Histogram(
            "churn_api_feature_age_seconds", "Age of the features served",
            buckets=(3600, 6 * 3600, 12 * 3600, 24 * 3600, 36 * 3600, 48 * 3600, 72 * 3600),
            registry=r,
        )  # fmt: skip
        self.errors = Counter("churn_api_errors", "Errors by kind", ["kind"], registry=r)
        for kind in ERROR_KINDS:  # every kind exported from the start: rate() needs a zero
            self.errors.labels(kind)
        # 1 for the version a worker serves, 0 once it has moved on; "max" over workers.
        self.model = Gauge(
            "churn_api_model_info", "The model being served (1) or no longer served (0)",
            ["version", "kind"], registry=r, multiprocess_mode="max",
        )  # fmt: skip

        # 1 when this worker has a model and the online store answers; "min" over workers.
        self.ready = Gauge(
            "churn_api_ready", "Model loaded and online store answering (1) or not (0)",
            registry=r, multiprocess_mode="min",
        )  # fmt: skip
        # Labelled children, looked up once: by (route, status), ("answers", status) or band.
        self._children: dict[tuple[str, int | str] | str, tuple] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        """One answered request (called for every request: the children are cached)."""
        key = (route, status)
        if key not in self._children:
            self._children[key] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
            )
        count, latency = self._children[key]
        count.inc()
        latency.observe(seconds)

    def answered(
        self, risks: Sequence[float], bands: Sequence[str], ages: Sequence[float], lapsed: int
    ) -> None:
        """The users of one batch answered: ``risks`` and ``bands`` of the scored ones,
        ``lapsed`` users answered as outside the scored population (no risk), and the age
        of the features served to all of them.

        Once per batch, not per user: each ``inc`` and ``observe`` is a write to the
        multiprocess file, and a batch's users mostly share a band and an age bucket."""
        for band, count in collections.Counter(bands).items():
            if band not in self._children:
                self._children[band] = (self.bands.labels(band),)
            self._children[band][0].inc(count)
        for status, count in (("scored", len(risks)), ("lapsed", lapsed)):
            key = ("answers", status)
            if key not in self._children:
                self._children[key] = (self.answers.labels(status),)
            if count:
                self._children[key][0].inc(count)
        observe_all(self.score, risks)
        observe_all(self.feature_age, ages)

    def exposition(self) -> bytes:
        """The text format of all workers' metrics (or this process's, outside multiprocess)."""
        if values.ValueClass is values.MutexValue:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        merged.register(_Ours(MultiProcessCollector(None, os.environ["PROMETHEUS_MULTIPROC_DIR"])))
        return generate_latest(merged)


class _Ours:
    """Only this API's families: the shared directory also holds Feast's own metrics."""

    def __init__(self, collector: MultiProcessCollector) -> None:
        self._collector = collector

    def collect(self):  # type: ignore[no-untyped-def]
        return (m for m in self._collector.collect() if m.name.startswith(PREFIX))


class RequestMetrics:
    """ASGI middleware: count and time each request by route template and status.

    Plain ASGI, not ``@app.middleware``: Starlette's BaseHTTPMiddleware costs more
    per request than the whole scoring path.
    """

    def __init__(self, app, metrics: ApiMetrics) -> None:  # type: ignore[no-untyped-def]
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message) -> None:  # type: ignore[no-untyped-def]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request(route, status, time.perf_counter() - start)


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe`` of each value, with one write per bucket touched and one to
    the sum. It relies on prometheus_client's layout (a count per bucket, not cumulative,
    and a sum); a unit test holds it equal to ``observe`` one by one."""
    if not values:
        return
    bounds, nan = histogram._upper_bounds, len(histogram._buckets)
    for index, count in collections.Counter(
        bisect_left(bounds, v) if v == v else nan for v in values
    ).items():
        if index != nan:  # NaN falls in no bucket, as with observe
            histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(values))


@cache
def api_metrics() -> ApiMetrics:
    """This process's metrics: multiprocess files are per process, so one set per process."""
    return ApiMetrics()
