"""``GET /users/{user_id}/churn-risk`` answered in plain ASGI, before Starlette's stack.

An empty FastAPI endpoint costs ~110 µs of CPU a request on the 2-core machine, the
same endpoint as a plain ASGI callable under the same uvicorn ~37 µs: the middleware
stack, routing, the ``Request`` and the ``Response`` are most of what a bare endpoint
costs (docs/performance.md). The scoring route is the one hot path, so the app
(``app.ChurnApi``) hands it here first: a GET of a valid id by an authorized caller,
once the service has started, goes straight to the service, and the answer is written
as two ASGI messages with the status, headers and body the FastAPI route writes.

Everything else takes FastAPI as before, this route included: an invalid id (FastAPI's
422), a missing or wrong token (the 401, counted there), a request before the lifespan
has started the service (the 503), a ``root_path`` behind a proxy. The route stays on
the router, so the OpenAPI document is FastAPI's; a unit test holds the two answers
byte-equal.
"""

from __future__ import annotations

import hmac
import re
import time

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr
from starlette.datastructures import State
from starlette.types import Scope, Send

from online_api.metrics import ApiMetrics
from online_api.routes import SINGLE_USER, USER_ID_CHARS, USER_ID_MAX, encoded, problem
from online_api.service import Unanswered

# The route's template with the id rule (``UserId``) in its place.
USER_PATH = re.compile(
    SINGLE_USER.replace("{user_id}", f"({USER_ID_CHARS}{{1,{USER_ID_MAX}}})")
).fullmatch


class SingleUserPath:
    """Which requests the single-user route answers without the framework, and the answer.

    ``state`` is the app's (the lifespan puts the service there), ``token`` the bearer
    token the route needs, if any; answers are counted in ``metrics`` as the request
    metrics middleware counts the framework's, under the route's template.
    """

    def __init__(self, state: State, token: SecretStr | None, metrics: ApiMetrics) -> None:
        self.state, self.metrics = state, metrics
        self._expected = token.get_secret_value().encode() if token else None

    def takes(self, scope: Scope) -> str | None:
        """The user id when this request is answered here, else None (FastAPI's to answer)."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        match = USER_PATH(scope["path"])
        if match is None or self.state.service is None or not self._authorized(scope):
            return None
        return match[1]

    async def answer(self, user_id: str, send: Send) -> None:
        """Write the user's answer (or why there is none) as the FastAPI route would."""
        start, status = time.perf_counter(), 500
        headers: dict[str, str] = {}
        try:
            try:
                body, status = encoded(await self.state.service.answer(user_id)), 200
            except Unanswered as exc:
                status, headers, body = problem(exc)
            raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
            raw += [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.metrics.request(SINGLE_USER, status, time.perf_counter() - start)

    def _authorized(self, scope: Scope) -> bool:
        """No token needed, or ``Authorization: Bearer <the token>``, read as FastAPI's
        ``HTTPBearer`` reads it (the first such header, the scheme in any case)."""
        if self._expected is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, given = get_authorization_scheme_param(value.decode("latin-1"))
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    given.encode(), self._expected
                )
        return False
