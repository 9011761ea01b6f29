"""The FastAPI app: ``GET /users/{user_id}/churn-risk`` scores a user from the id alone.

The service fetches the user's online features through Feast (the feature
service of the production model), scores them with the compiled production
model and answers with the risk, its band and the factors behind it.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from churn.settings import Settings, get_settings
from online_api.metrics import ApiMetrics
from online_api.model_holder import Loaded, ModelHolder
from online_api.online_features import FeatureRow, OnlineFeatures
from online_api.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ChurnRisk,
    Factor,
    Problem,
    RiskBand,
)

log = logging.getLogger(__name__)
UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def risk_band(risk: float, settings: Settings) -> RiskBand:
    if risk >= settings.risk_band_high:
        return "high"
    return "medium" if risk >= settings.risk_band_medium else "low"


def create_app(
    settings: Settings | None = None,
    holder: ModelHolder | None = None,
    features: OnlineFeatures | None = None,
) -> FastAPI:
    """The app for ``settings``; tests pass their own settings, holder or feature source."""
    settings = settings or get_settings()
    holder = holder or ModelHolder(settings)
    metrics = ApiMetrics()
    app = FastAPI(title="churn risk", version="1", description=__doc__)
    state: dict = {}  # per app: the feature source, the version named by the info gauge

    def online() -> OnlineFeatures:
        if "features" not in state:
            state["features"] = features or OnlineFeatures(settings)
        return state["features"]

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(template, str(response.status_code)).inc()
        metrics.latency.labels(template).observe(time.perf_counter() - start)
        return response

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        """With CHURN_API_TOKEN set, scoring needs ``Authorization: Bearer <token>``."""
        if settings.api_token is None:
            return
        expected = f"Bearer {settings.api_token.get_secret_value()}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            metrics.errors.labels("unauthorized").inc()
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    guarded = [Depends(require_token)]

    def problem(status: int, kind: str, detail: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": Problem}})
    def ready() -> Response:
        """A production model is loaded and the online store answers."""
        loaded = holder.current()
        if loaded is None:
            return problem(503, "no_model", "no production model: run `churn promote`")
        try:
            online().fetch(["__readiness__"], loaded.metadata["feature_refs"][:1])
        except Exception as exc:
            return problem(
                503, "store_unavailable", f"online store unavailable: {type(exc).__name__}"
            )
        return JSONResponse({"status": "ready", "model_version": loaded.scorer.version})

    @app.get("/model", responses={503: {"model": Problem}}, dependencies=guarded)
    def model() -> Response:
        """Metadata and validation metrics of the production model."""
        loaded = holder.current()
        if loaded is None:
            return problem(503, "no_model", "no production model: run `churn promote`")
        keep = ("version", "model_kind", "created_at", "feature_service", "feature_refs",
                "metrics", "references", "split", "rows", "positive_rate")  # fmt: skip
        return JSONResponse({k: loaded.metadata.get(k) for k in keep})

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/users/{user_id}/churn-risk",
        response_model=ChurnRisk,
        responses={404: {"model": Problem}, 503: {"model": Problem}},
        dependencies=guarded,
    )
    def churn_risk(user_id: UserId) -> Response | ChurnRisk:
        """How likely this user is to have no learning activity over the horizon."""
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        rows = fetch([user_id], loaded)
        if isinstance(rows, Response):
            return rows
        if rows[0] is None:
            return problem(404, "not_found", f"user {user_id} has no features in the online store")
        return respond(user_id, rows[0], loaded)

    def serving_model() -> Loaded | Response:
        """The production model, or the 503 that says there is none."""
        loaded = holder.current()
        if loaded is None:
            return problem(503, "no_model", "no production model: run `churn promote`")
        if state.get("version") != loaded.scorer.version:
            # Only on a switch: the info gauge names the one model this worker serves.
            if "version" in state:
                metrics.model.remove(state["version"], state["kind"])
            state["version"] = loaded.scorer.version
            state["kind"] = loaded.metadata.get("model_kind", "")
            metrics.model.labels(state["version"], state["kind"]).set(1)
        return loaded

    def fetch(user_ids: list[str], loaded: Loaded) -> list[FeatureRow | None] | Response:
        """Feature rows in one online-store round trip, or a quick 503 when it fails."""
        start = time.perf_counter()
        try:
            rows = online().fetch(user_ids, loaded.metadata["feature_refs"])
        except Exception as exc:
            log.warning("online store unavailable: %s", type(exc).__name__)
            response = problem(503, "store_unavailable", "online store unavailable")
            response.headers["Retry-After"] = "1"
            return response
        metrics.fetch.observe(time.perf_counter() - start)
        return rows

    def respond(user_id: str, row: FeatureRow, loaded: Loaded) -> ChurnRisk:
        start = time.perf_counter()
        risk = loaded.scorer.score(row.values)
        factors = loaded.scorer.top_factors(row.values)
        metrics.inference.observe(time.perf_counter() - start)
        band = risk_band(risk, settings)
        metrics.score.observe(risk)
        metrics.bands.labels(band).inc()
        now = datetime.now(UTC)
        if row.as_of is not None:
            metrics.feature_age.observe((now - row.as_of).total_seconds())
        return ChurnRisk(
            user_id=user_id,
            churn_risk=risk,
            risk_band=band,
            model_version=loaded.scorer.version,
            features_as_of=row.as_of,
            top_factors=[
                Factor(feature=f.feature, value=f.value, effect=f.effect) for f in factors
            ],
            served_at=now,
        )

    @app.post(
        "/churn-risk:batch",
        response_model=BatchResponse,
        responses={413: {"model": Problem}, 503: {"model": Problem}},
        dependencies=guarded,
    )
    def churn_risk_batch(request: BatchRequest) -> Response | BatchResponse:
        """Risks of many users in one online-store round trip; unknown ids reported per item."""
        if len(request.user_ids) > settings.api_batch_max:
            return problem(
                413, "batch_too_large",
                f"{len(request.user_ids)} user ids; at most {settings.api_batch_max} per request",
            )  # fmt: skip
        loaded = serving_model()
        if isinstance(loaded, Response):
            return loaded
        rows = fetch(request.user_ids, loaded)
        if isinstance(rows, Response):
            return rows
        items = []
        for user_id, row in zip(request.user_ids, rows, strict=True):
            if row is None:
                metrics.errors.labels("not_found").inc()
                items.append(BatchItem(user_id=user_id, error="not_found",
                                       detail="no features in the online store"))  # fmt: skip
            else:
                items.append(BatchItem(user_id=user_id, result=respond(user_id, row, loaded)))
        return BatchResponse(results=items)

    return app


def app_factory() -> FastAPI:
    """What ``churn serve`` (uvicorn, one per worker) builds."""
    return create_app()
