"""The FastAPI app: ``GET /users/{user_id}/churn-risk`` scores a user from the id alone.

The service fetches the user's online features through Feast (the feature
service of the production model), scores them with the compiled production
model and answers with the risk, its band and the factors behind it. A user
outside the scored population (no activity in the ``active_lookback_days``
before the features' day, ``training.labels.in_population``) is answered
``lapsed`` with the days since the last activity and no risk: the model learned
only from the population, so its probability for anyone else is an extrapolation.

The request path is async end to end and does no per-request set-up: the
FeatureStore is opened, the model compiled and its feature service resolved at
start-up or on a model switch (in a thread), the read is one async Redis round
trip through Feast's online store, and bodies are written by orjson.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError

from churn.risk import risk_band
from churn.settings import Settings, get_settings
from feature_repo.spec import DAYS_SINCE_FIRST_ACTIVITY
from online_api.coalescer import Coalescer
from online_api.metrics import ApiMetrics, api_metrics
from online_api.model_holder import Loaded, ModelHolder
from online_api.online_features import FeatureRow, OnlineFeatures
from online_api.schemas import (
    ANSWER_EXAMPLES,
    BatchRequest,
    BatchResponse,
    ChurnRisk,
    Problem,
    with_example_nulls,
)
from training.labels import POPULATION_FEATURES, in_population
from training.references import RECENCY

log = logging.getLogger(__name__)
UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
READINESS_ID = "__readiness__"  # an id no user has: reading it proves the store answers
READY_PROBE_SECONDS = 5.0
STORE_ERRORS = (RedisError, OSError, TimeoutError)
BEARER = HTTPBearer(auto_error=False, description="CHURN_API_TOKEN, when it is set")


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_UTC_Z),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


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


# A found user's response body, or (error kind, detail) when the user cannot be answered.
Outcome = dict | tuple[str, str] | None


class Serving:
    """What the endpoints score with; filled in by the app's start-up."""

    online: OnlineFeatures | None = None
    holder: ModelHolder | None = None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings``. Serving starts with the app's lifespan (``with TestClient``)."""
    settings = settings or get_settings()
    metrics = api_metrics()
    serving = Serving()
    shown: dict[str, str] = {}  # the version (and kind) the info gauge names as served

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        online = await asyncio.to_thread(OnlineFeatures, settings)

        def resolve(metadata: dict):  # type: ignore[no-untyped-def]
            # The population rule's features are read whether or not the model uses them.
            refs = metadata["feature_refs"]
            return online.plan(metadata["feature_service"], refs, also=POPULATION_FEATURES)

        holder = ModelHolder(settings, resolve)
        await asyncio.to_thread(holder.refresh)
        serving.online, serving.holder = online, holder
        await warm_up(holder)
        # Start-up leaves a few hundred thousand long-lived objects (Feast, pandas, sklearn);
        # frozen, the collector stops re-scanning them: full collections took ~120 ms, the p99.
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(holder.watch()), asyncio.create_task(probe_readiness())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await online.aclose()

    app = FastAPI(title="churn risk", version="1", description=__doc__, lifespan=lifespan)
    generate_openapi = app.openapi  # builds the document once, then returns the same dict
    app.openapi = lambda: with_example_nulls(generate_openapi())  # type: ignore[method-assign]
    app.add_middleware(RequestMetrics, metrics=metrics)

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        """With CHURN_API_TOKEN set, scoring needs ``Authorization: Bearer <token>``."""
        expected = settings.api_token.get_secret_value()  # type: ignore[union-attr]
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            metrics.errors.labels("unauthorized").inc()
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    guarded = [Depends(require_token)] if settings.api_token is not None else []

    def problem(status: int, kind: str, detail: str, headers: dict | None = None) -> Response:
        metrics.errors.labels(kind).inc()
        return json_response({"detail": detail}, status, headers)

    async def warm_up(holder: ModelHolder) -> None:
        """Open the Redis connection and run the scorer once, before the first request."""
        loaded = holder.current()
        if loaded is None:
            return
        loaded.scorer.explain_many([dict(loaded.scorer.references)])
        if not await store_answers(loaded):
            log.warning("online store not reachable at start-up")

    async def store_answers(loaded: Loaded) -> bool:
        try:
            await serving.online.fetch([READINESS_ID], loaded.plan)  # type: ignore[union-attr]
        except STORE_ERRORS:
            return False
        return True

    async def probe_readiness() -> None:
        """Keep ``churn_api_ready`` current between scrapes (alerts read it, not /ready)."""
        while True:
            loaded = serving.holder.current() if serving.holder else None
            ready = loaded is not None and await store_answers(loaded)
            metrics.ready.set(1.0 if ready else 0.0)
            await asyncio.sleep(READY_PROBE_SECONDS)

    def serving_model() -> Loaded | Response:
        """The production model, or the 503 that says there is none."""
        loaded = serving.holder.current() if serving.holder else None
        if loaded is None:
            return no_model()
        version = loaded.scorer.version
        if shown.get("version") != version:
            # Only on a switch: the gauge says 1 for the version served, 0 for the one replaced.
            if shown:
                metrics.model.labels(shown["version"], shown["kind"]).set(0)
            shown.update(version=version, kind=loaded.metadata.get("model_kind", ""))
            metrics.model.labels(version, shown["kind"]).set(1)
        return loaded

    async def score_users(user_ids: list[str]) -> list[Outcome]:
        """Each user's result, or why there is none, from one online-store round trip.

        Raises the store's error (the callers answer 503) when the read fails.
        """
        # The callers checked that a model is loaded, and a loaded model is never unloaded.
        loaded: Loaded = serving.holder.current()  # type: ignore[union-attr,assignment]
        start = time.perf_counter()
        rows = await serving.online.fetch(user_ids, loaded.plan)  # type: ignore[union-attr]
        metrics.fetch.observe(time.perf_counter() - start)
        now = datetime.now(UTC)
        outcomes: list[Outcome] = [
            missing(u, r, loaded, now) for u, r in zip(user_ids, rows, strict=True)
        ]
        found = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if found:
            scored = results([user_ids[i] for i in found], [rows[i] for i in found], loaded, now)
            for i, result in zip(found, scored, strict=True):
                outcomes[i] = result
        return outcomes

    coalescer = Coalescer(score_users, settings.api_batch_max)

    def no_model() -> Response:
        return problem(503, "no_model", "no production model: run `churn promote`")

    def unavailable(exc: BaseException) -> Response:
        log.warning("online store unavailable: %s", type(exc).__name__)
        return problem(503, "store_unavailable", "online store unavailable", {"Retry-After": "1"})

    def missing(
        user_id: str, row: FeatureRow | None, loaded: Loaded, now: datetime
    ) -> tuple[str, str] | None:
        """Why this user cannot be scored, as (kind, detail); counted by kind. None: scorable."""
        if row is None:
            reason = ("not_found", f"user {user_id} has no features in the online store")
        elif loaded.plan.is_stale(row, now):
            reason = ("stale_features", f"user {user_id} has no features within the TTL: the "
                      f"newest are from {row.as_of:%Y-%m-%d %H:%M} UTC, older than {loaded.plan.ttl}")  # fmt: skip
        else:
            return None
        metrics.errors.labels(reason[0]).inc()
        return reason

    def results(
        user_ids: list[str], rows: list[FeatureRow], loaded: Loaded, now: datetime
    ) -> list[dict]:
        """Answer the found users: score and explain, in one vectorised pass, those in the
        population; answer the others lapsed, never scored. Each answer is counted."""
        lookback = settings.active_lookback_days
        recency = [row.values[RECENCY] for row in rows]
        inside = [
            in_population(days, row.values[DAYS_SINCE_FIRST_ACTIVITY], lookback)
            for days, row in zip(recency, rows, strict=True)
        ]
        # The scorer reads only the model's features from a row, not the rule's extras.
        scored = [row.values for row, ok in zip(rows, inside, strict=True) if ok]
        risks: list[float] = []
        factors: list[list] = []
        if scored:
            start = time.perf_counter()
            values, reasons = loaded.scorer.explain_many(scored)
            metrics.inference.observe(time.perf_counter() - start)
            risks, factors = values.tolist(), reasons
        answers = iter(zip(risks, factors, strict=True))
        out = []
        for user_id, row, days, ok in zip(user_ids, rows, recency, inside, strict=True):
            age = (now - row.as_of).total_seconds() if row.as_of is not None else None
            body = {
                "user_id": user_id,
                "status": "scored" if ok else "lapsed",
                "churn_risk": None,
                "risk_band": None,
                "days_since_last_activity": days,
                "model_version": loaded.scorer.version,
                "features_as_of": row.as_of,
                "top_factors": None,
                "served_at": now,
            }
            if ok:
                risk, reasons = next(answers)
                band = risk_band(risk, settings)
                metrics.served(risk, band, age)
                body |= {
                    "churn_risk": risk,
                    "risk_band": band,
                    "top_factors": [
                        {"feature": f.feature, "value": f.value, "effect": f.effect}
                        for f in reasons
                    ],
                }
            else:
                metrics.lapsed(age)
            out.append(body)
        return out

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": Problem}})
    async def ready() -> Response:
        """A production model is loaded and the online store answers."""
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        try:
            await serving.online.fetch([READINESS_ID], loaded.plan)  # type: ignore[union-attr]
        except STORE_ERRORS as exc:
            metrics.ready.set(0.0)
            return unavailable(exc)
        metrics.ready.set(1.0)
        return json_response({"status": "ready", "model_version": loaded.scorer.version})

    @app.get("/model", responses={503: {"model": Problem}}, dependencies=guarded)
    async def model() -> Response:
        """Metadata and validation metrics of the production model."""
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        keep = ("version", "model_kind", "created_at", "feature_service", "feature_refs",
                "metrics", "references", "split", "rows", "positive_rate")  # fmt: skip
        return json_response({k: loaded.metadata.get(k) for k in keep})

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics of all workers (text format)."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get(
        "/users/{user_id}/churn-risk",
        response_model=ChurnRisk,
        responses={200: {"content": {"application/json": {"examples": ANSWER_EXAMPLES}}},
                   404: {"model": Problem}, 503: {"model": Problem}},
        dependencies=guarded,
    )  # fmt: skip
    async def churn_risk(user_id: UserId) -> Response:
        """How likely this user is to have no learning activity over the horizon; a user
        outside the scored population is answered ``lapsed``, with no risk."""
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        try:
            outcome = await coalescer.submit(user_id)
        except STORE_ERRORS as exc:
            return unavailable(exc)
        if isinstance(outcome, tuple):
            return json_response({"detail": outcome[1]}, 404)
        return json_response(outcome)

    @app.post(
        "/churn-risk:batch",
        response_model=BatchResponse,
        responses={413: {"model": Problem}, 503: {"model": Problem}},
        dependencies=guarded,
    )
    async def churn_risk_batch(request: BatchRequest) -> Response:
        """Answers of many users in one online-store round trip, each as the single endpoint
        gives it (scored or lapsed); unknown ids reported per item."""
        if len(request.user_ids) > settings.api_batch_max:
            return problem(
                413, "batch_too_large",
                f"{len(request.user_ids)} user ids; at most {settings.api_batch_max} per request",
            )  # fmt: skip
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        try:
            outcomes = await score_users(request.user_ids)
        except STORE_ERRORS as exc:
            return unavailable(exc)
        items = [
            {"user_id": u, "result": None, "error": outcome[0], "detail": outcome[1]}
            if isinstance(outcome, tuple) else {"user_id": u, "result": outcome}
            for u, outcome in zip(request.user_ids, outcomes, strict=True)
        ]  # fmt: skip
        return json_response({"results": items})

    return app


def app_factory() -> FastAPI:
    """What ``churn serve`` (uvicorn, one per worker) builds."""
    return create_app()
