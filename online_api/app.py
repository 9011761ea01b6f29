"""The FastAPI app: ``GET /users/{user_id}/churn-risk`` scores a user from the id alone.

The service fetches the user's online features through Feast (the feature
service of the production model), scores them with the compiled production
model and answers with the risk, its band and the factors behind it. A user
outside the scored population (no activity in the ``active_lookback_days``
before the features' day, ``served.population.in_population``) is answered
``lapsed`` with the days since the last activity and no risk: the model learned
only from the population, so its probability for anyone else is an extrapolation.

The request path is async end to end and does no per-request set-up: the
FeatureStore is opened, the model compiled and its feature service resolved at
start-up or on a model switch (in a thread), the read is one async Redis round
trip in Feast's layout on Feast's Redis client, and bodies are written by orjson.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from core.settings import Settings, get_settings
from online_api import routes
from online_api.deps import BearerToken
from online_api.fast_path import SingleUserPath
from online_api.metrics import ApiMetrics, RequestMetrics, api_metrics
from online_api.online_features import OnlineFeatures
from online_api.schemas import with_example_nulls
from online_api.service import FeatureSource, ScoringService, Unanswered


class ChurnApi(FastAPI):
    """FastAPI, with the single-user route's valid requests answered before its stack
    (``fast_path``): an empty FastAPI endpoint costs three times a plain ASGI one here.
    A middleware added to this app does not see those requests: it belongs in
    ``fast_path`` as well, or the route must leave the fast path."""

    single_user: SingleUserPath

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user_id = self.single_user.takes(scope)
        if user_id is None:
            await super().__call__(scope, receive, send)
        else:
            await self.single_user.answer(user_id, send)


def create_app(
    settings: Settings | None = None,
    online: FeatureSource | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """The app for ``settings``. Serving starts with the app's lifespan (``with TestClient``),
    which opens ``online`` (default: Feast's online store for ``settings``) and loads the
    production model; ``metrics`` defaults to this process's set."""
    settings = settings or get_settings()
    metrics = metrics or api_metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        source = online if online is not None else await asyncio.to_thread(OnlineFeatures, settings)
        service = await ScoringService.start(settings, source, metrics)
        # Start-up leaves a few hundred thousand long-lived objects (Feast, pandas, sklearn);
        # frozen, the collector stops re-scanning them: full collections took ~120 ms, the p99.
        gc.collect()
        gc.freeze()
        app.state.service = service
        try:
            async with service.watching():
                yield
        finally:
            app.state.service = None
            await source.aclose()

    app = ChurnApi(title="churn risk", version="1", description=__doc__, lifespan=lifespan)
    app.state.service, app.state.metrics = None, metrics
    app.single_user = SingleUserPath(app.state, settings.api_token, metrics)
    generate_openapi = app.openapi  # builds the document once, then returns the same dict
    app.openapi = lambda: with_example_nulls(generate_openapi())  # type: ignore[method-assign]
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_exception_handler(Unanswered, routes.unanswered)  # type: ignore[arg-type]
    token = settings.api_token
    routes.add_routes(app.router, Depends(BearerToken(token, metrics)) if token else None)
    return app


def app_factory() -> FastAPI:
    """What ``churn serve`` (uvicorn, one per worker) builds."""
    return create_app()
