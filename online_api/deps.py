"""What the routes are given: the scoring service, the metrics, the bearer-token check.

The service and the metrics live on ``app.state`` (the lifespan puts the service
there once the model is loaded); routes take them through the ``Annotated``
aliases below, so a test can hand an app any service it built. (The single-user
route's valid requests are answered before FastAPI, by ``fast_path``.)
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from online_api.metrics import ApiMetrics
from online_api.service import ScoringService

BEARER = HTTPBearer(auto_error=False, description="CHURN_API_TOKEN, when it is set")


async def get_service(request: Request) -> ScoringService:
    """The app's scoring service; a 503 before the lifespan has started it."""
    service = request.app.state.service
    if service is None:
        raise HTTPException(503, "the service is starting: no model loaded yet")
    return service


async def get_metrics(request: Request) -> ApiMetrics:
    """The app's metrics (there from ``create_app`` on, before the service)."""
    return request.app.state.metrics


ServiceDep = Annotated[ScoringService, Depends(get_service)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


class BearerToken:
    """Dependency of the scoring routes when CHURN_API_TOKEN is set: they then need
    ``Authorization: Bearer <token>``; anything else is a 401, counted ``unauthorized``."""

    def __init__(self, token: SecretStr, metrics: ApiMetrics) -> None:
        self._expected = token.get_secret_value().encode()
        self._metrics = metrics

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), self._expected):
            self._metrics.errors.labels("unauthorized").inc()
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )
