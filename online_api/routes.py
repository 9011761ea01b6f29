"""The API's routes: thin, each asks the scoring service and writes its answer.

Every status a route answers is in its ``responses`` (the OpenAPI document); FastAPI
adds the 422 of routes with parameters or a body. Bodies are written by orjson into a
plain ``Response``: no response-model validation on the request path. A valid
single-user request is answered before it reaches these routes (``fast_path``), with
the same bytes.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response, params

from online_api.deps import MetricsDep, ServiceDep
from online_api.schemas import ANSWER_EXAMPLES, BatchRequest, BatchResponse, ChurnRisk, Problem
from online_api.service import Unanswered

SINGLE_USER = "/users/{user_id}/churn-risk"
USER_ID_CHARS = r"[A-Za-z0-9_.:-]"
USER_ID_MAX = 64
UserId = Annotated[str, Path(min_length=1, max_length=USER_ID_MAX, pattern=rf"^{USER_ID_CHARS}+$")]

# The HTTP status of each kind of Unanswered.
STATUS = {"not_found": 404, "stale_features": 404, "batch_too_large": 413,
          "no_model": 503, "store_unavailable": 503}  # fmt: skip


Responses = dict[int | str, dict[str, Any]]


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


NO_FEATURES = _problem("No features for this user in the online store, or only features "
                       "older than the feature view's TTL")  # fmt: skip
NOT_UTF8 = _problem("The body is not UTF-8, so not JSON (FastAPI's own answer; malformed "
                    "JSON in UTF-8 is a 422)")  # fmt: skip
TOO_MANY = _problem("More than CHURN_API_BATCH_MAX user ids")
UNAVAILABLE = _problem("No production model (yet), or the online store is down or too slow "
                       "(then with Retry-After: 1)")  # fmt: skip
UNAUTHORIZED = _problem("Missing or wrong bearer token (only when CHURN_API_TOKEN is set)")


def encoded(body: object) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def json_response(body: object) -> Response:
    return Response(encoded(body), media_type="application/json")


def problem(exc: Unanswered) -> tuple[int, dict[str, str], bytes]:
    """The status, extra headers and body that answer ``exc``: ``{"detail": …}``, and
    ``Retry-After`` when the store is unavailable."""
    retry = {"Retry-After": "1"} if exc.kind == "store_unavailable" else {}
    return STATUS[exc.kind], retry, encoded({"detail": exc.detail})


async def unanswered(_: Request, exc: Unanswered) -> Response:
    """The exception handler of ``Unanswered``."""
    status, headers, body = problem(exc)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def churn_risk(user_id: UserId, service: ServiceDep) -> Response:
    """How likely this user is to have no learning activity over the horizon; a user
    outside the scored population is answered ``lapsed``, with no risk."""
    return json_response(await service.answer(user_id))


async def churn_risk_batch(request: BatchRequest, service: ServiceDep) -> Response:
    """Answers of many users in one online-store round trip, each as the single endpoint
    gives it (scored or lapsed); unknown ids reported per item."""
    return json_response({"results": await service.answer_batch(request.user_ids)})


async def model(service: ServiceDep) -> Response:
    """Metadata and validation metrics of the production model."""
    return json_response(service.model_card())


async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def ready(service: ServiceDep) -> Response:
    """A production model is loaded and the online store answers."""
    return json_response(await service.ready())


def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus metrics of all workers (text format)."""
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")


def add_routes(router: APIRouter, token_check: params.Depends | None = None) -> None:
    """Put every route on ``router`` (the app's own); with ``token_check``, scoring and
    /model need the bearer token, the probes and /metrics stay open.

    Not ``include_router``: FastAPI 0.16x keeps an included router nested and matches
    through it on every request, about 10 µs a request here (a bare endpoint takes 40).
    """
    already = len(router.routes)  # FastAPI's own: /openapi.json, /docs, /redoc
    guard = [token_check] if token_check else []
    unauthorized: Responses = {401: UNAUTHORIZED} if token_check else {}
    single: Responses = {200: {"content": {"application/json": {"examples": ANSWER_EXAMPLES}}}}
    router.add_api_route(
        SINGLE_USER, churn_risk, dependencies=guard, response_model=ChurnRisk,
        responses=single | {404: NO_FEATURES, 503: UNAVAILABLE} | unauthorized,
    )  # fmt: skip
    router.add_api_route(
        "/churn-risk:batch", churn_risk_batch, methods=["POST"], dependencies=guard,
        response_model=BatchResponse,
        responses={400: NOT_UTF8, 413: TOO_MANY, 503: UNAVAILABLE, **unauthorized},
    )  # fmt: skip
    router.add_api_route(
        "/model", model, dependencies=guard, responses={503: UNAVAILABLE, **unauthorized}
    )
    router.add_api_route("/health", health)
    router.add_api_route("/ready", ready, responses={503: UNAVAILABLE})
    router.add_api_route("/metrics", prometheus, response_class=Response)
    # A request tries the routes in order: scoring first, the docs last.
    router.routes[:] = router.routes[already:] + router.routes[:already]
