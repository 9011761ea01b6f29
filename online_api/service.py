"""The scoring service: what the API does for a request, on parts given to it.

``ScoringService`` holds the online feature source, the model holder and the
metrics it is built with, and the coalescer that joins concurrent single-user
requests. The routes only translate its answers and its ``Unanswered`` errors
into HTTP; the unit tests build it on an in-memory feature source.

A user outside the scored population (no activity in the ``active_lookback_days``
before the features' day, ``served.population.in_population``) is answered
``lapsed`` with the days since the last activity and no risk: the model learned
only from the population, so its probability for anyone else is an extrapolation.

Every answer says whether the user is ``listed`` on the newest night's outreach list and,
only then, their ``arm`` of the holdout experiment (``online_api.outreach_list``), so a
CRM asking about one user contacts exactly the list's contact arm: neither a holdout
user nor anyone the night did not list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, cast

from redis.exceptions import RedisError

from core.settings import Settings
from feature_repo.spec import DAYS_SINCE_FIRST_ACTIVITY
from online_api.coalescer import Coalescer
from online_api.metrics import ApiMetrics
from online_api.model_holder import Loaded, ModelHolder
from online_api.online_features import FeatureRow, Plan
from online_api.outreach_list import OutreachList
from served.card import ModelCard
from served.population import POPULATION_FEATURES, RECENCY, in_population
from served.risk_bands import risk_band

log = logging.getLogger(__name__)
READINESS_ID = "__readiness__"  # an id no user has: reading it proves the store answers
READY_PROBE_SECONDS = 5.0
STORE_ERRORS = (RedisError, OSError, TimeoutError)
MODEL_CARD = ("version", "model_kind", "created_at", "feature_service", "feature_refs",
              "metrics", "references", "split", "rows", "positive_rate")  # fmt: skip

# A found user's answer, or (error kind, detail) when the user cannot be answered.
Outcome = dict | tuple[str, str]


class FeatureSource(Protocol):
    """Where serving reads feature rows: ``OnlineFeatures`` (Feast over Redis), or any
    object with the same three methods (an in-memory one in the unit tests)."""

    def plan(self, feature_service: str, refs: list[str], also: Sequence[str] = ()) -> Plan: ...

    async def fetch(self, user_ids: list[str], plan: Plan) -> list[FeatureRow | None]: ...

    async def aclose(self) -> None: ...


def model_plan(online: FeatureSource, feature_service: str, refs: Sequence[str]) -> Plan:
    """``online``'s plan for a model of ``refs``: the population rule's features are read
    whether or not the model uses them. The API and the skew check both read through it."""
    return online.plan(feature_service, list(refs), also=POPULATION_FEATURES)


def utc_now() -> datetime:
    """The service's clock unless a test pins one."""
    return datetime.now(UTC)


class Unanswered(Exception):
    """Why a request gets no answer. ``kind`` is its ``churn_api_errors`` label, counted
    where the error is found; ``detail`` is what the client is told."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class ScoringService:
    """Answers users from their online features and the production model.

    ``clock`` (default: the real UTC now) is read once per store read: the TTL check and
    ``served_at``; tests pin it. ``outreach`` (default: one of ``settings``, empty until
    refreshed) is the newest night's list the answers' ``listed`` and ``arm`` come from.
    """

    def __init__(
        self,
        settings: Settings,
        online: FeatureSource,
        holder: ModelHolder,
        metrics: ApiMetrics,
        clock: Callable[[], datetime] = utc_now,
        outreach: OutreachList | None = None,
    ) -> None:
        self.settings, self.online, self.holder, self.metrics = settings, online, holder, metrics
        self.clock = clock
        self.outreach = outreach or OutreachList(settings)
        # The coalescer's work is this service's own batch read, so the service builds it.
        self.coalescer: Coalescer[Outcome] = Coalescer(self.score_users, settings.api_batch_max)
        self._shown: dict[str, str] = {}  # the version (and kind) the info gauge names as served

    @classmethod
    async def start(
        cls, settings: Settings, online: FeatureSource, metrics: ApiMetrics
    ) -> ScoringService:
        """The service with the production model loaded (if any) and warmed up."""

        def resolve(card: ModelCard) -> Plan:
            return model_plan(online, card.feature_service, list(card.feature_refs))

        holder = ModelHolder(settings, resolve)
        await asyncio.to_thread(holder.refresh)
        outreach = OutreachList(settings)
        await outreach.look()
        service = cls(settings, online, holder, metrics, outreach=outreach)
        await service.warm_up()
        return service

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """While inside: follow the production alias and the newest outreach list, and keep
        the readiness gauge current."""
        watches = (self.holder.watch(), self.outreach.watch(), self._probe())
        tasks = [asyncio.create_task(watch) for watch in watches]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def warm_up(self) -> None:
        """Open the Redis connection and run the scorer once, before the first request."""
        loaded = self.holder.current()
        if loaded is None:
            return
        loaded.scorer.explain_many([dict(loaded.scorer.references)])
        if not await self._store_answers(loaded):
            log.warning("online store not reachable at start-up")

    def model(self) -> Loaded:
        """The production model; raises Unanswered (no_model) when there is none."""
        loaded = self.holder.current()
        if loaded is None:
            raise self._fail("no_model", "no production model: run `churn promote`")
        version = loaded.scorer.version
        if self._shown.get("version") != version:
            # Only on a switch: the gauge says 1 for the version served, 0 for the one replaced.
            if self._shown:
                self.metrics.model.labels(self._shown["version"], self._shown["kind"]).set(0)
            self._shown.update(version=version, kind=loaded.card.model_kind)
            self.metrics.model.labels(version, self._shown["kind"]).set(1)
        return loaded

    def model_card(self) -> dict:
        """Metadata and validation metrics of the production model."""
        metadata = self.model().card.metadata
        return {key: metadata.get(key) for key in MODEL_CARD}

    async def ready(self) -> dict:
        """The served version when a model is loaded and the store answers; else Unanswered."""
        loaded = self.model()
        try:
            await self.online.fetch([READINESS_ID], loaded.plan)
        except STORE_ERRORS as exc:
            self.metrics.ready.set(0.0)
            raise self._unavailable(exc) from exc
        self.metrics.ready.set(1.0)
        return {"status": "ready", "model_version": loaded.scorer.version}

    async def answer(self, user_id: str) -> dict:
        """One user's answer (scored or lapsed), read together with concurrent requests;
        raises Unanswered: no_model, store_unavailable, not_found or stale_features."""
        self.model()
        try:
            outcome = await self.coalescer.submit(user_id)
        except STORE_ERRORS as exc:
            raise self._unavailable(exc) from exc
        if isinstance(outcome, tuple):
            raise Unanswered(*outcome)  # counted when it was found
        return outcome

    async def answer_batch(self, user_ids: list[str]) -> list[dict]:
        """Each user's item, answered or with why not, from one online-store read; raises
        Unanswered: batch_too_large, no_model or store_unavailable."""
        limit = self.settings.api_batch_max
        if len(user_ids) > limit:
            detail = f"{len(user_ids)} user ids; at most {limit} per request"
            raise self._fail("batch_too_large", detail)
        self.model()
        try:
            outcomes = await self.score_users(user_ids)
        except STORE_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return [
            {"user_id": u, "result": None, "error": outcome[0], "detail": outcome[1]}
            if isinstance(outcome, tuple) else {"user_id": u, "result": outcome}
            for u, outcome in zip(user_ids, outcomes, strict=True)
        ]  # fmt: skip

    async def score_users(self, user_ids: list[str]) -> list[Outcome]:
        """Each user's answer, or why there is none, from one online-store round trip.

        Raises the store's error when the read fails. The callers checked that a model
        is loaded, and a loaded model is never unloaded.
        """
        loaded: Loaded = self.holder.current()  # type: ignore[assignment]
        start = time.perf_counter()
        rows = await self.online.fetch(user_ids, loaded.plan)
        self.metrics.fetch.observe(time.perf_counter() - start)
        now = self.clock()
        reasons = [self._missing(u, r, loaded, now) for u, r in zip(user_ids, rows, strict=True)]
        found = [(u, r) for u, r, why in zip(user_ids, rows, reasons, strict=True)
                 if why is None and r is not None]  # fmt: skip
        answers = iter(self._answers(found, loaded, now) if found else ())
        return [why if why is not None else next(answers) for why in reasons]

    def _missing(
        self, user_id: str, row: FeatureRow | None, loaded: Loaded, now: datetime
    ) -> tuple[str, str] | None:
        """Why this user cannot be scored, as (kind, detail); counted by kind. None: scorable."""
        if row is None:
            reason = ("not_found", f"user {user_id} has no features in the online store")
        elif loaded.plan.is_stale(row, now):
            reason = ("stale_features", f"user {user_id} has no features within the TTL: the "
                      f"newest are from {row.as_of:%Y-%m-%d %H:%M} UTC, older than {loaded.plan.ttl}")  # fmt: skip
        else:
            return None
        self.metrics.errors.labels(reason[0]).inc()
        return reason

    def _answers(
        self, found: list[tuple[str, FeatureRow]], loaded: Loaded, now: datetime
    ) -> list[dict]:
        """Answer the found (user id, row)s: score and explain, in one vectorised pass, those
        in the population; answer the others lapsed, never scored. Each answer is counted.

        Every answer says whether the user is on the newest night's list and, only then,
        their arm there (else null), whatever the risk: one dict lookup per user."""
        rows = [row for _, row in found]
        newest_list = self.outreach.arms()  # one list for the whole batch, across a reload too
        arms = [newest_list.get(user_id) for user_id, _ in found]
        lookback = self.settings.active_lookback_days
        # Two int64 features (None when missing), as Feast decodes them; the rule checks them.
        recency = [cast(int, row.values[RECENCY]) for row in rows]
        inside = [
            in_population(days, cast("int | None", row.values[DAYS_SINCE_FIRST_ACTIVITY]), lookback)
            for days, row in zip(recency, rows, strict=True)
        ]
        # The scorer reads only the model's features from a row, not the rule's extras.
        scored = [row.values for row, ok in zip(rows, inside, strict=True) if ok]
        risks: list[float] = []
        factors: list[list] = []
        if scored:
            start = time.perf_counter()
            values, reasons = loaded.scorer.explain_many(scored)
            self.metrics.inference.observe(time.perf_counter() - start)
            risks, factors = values.tolist(), reasons
        bands = [risk_band(risk, self.settings) for risk in risks]
        explained = iter(zip(risks, bands, factors, strict=True))
        out = []
        for (user_id, row), days, ok, arm in zip(found, recency, inside, arms, strict=True):
            body: dict[str, object] = {
                "user_id": user_id,
                "status": "scored" if ok else "lapsed",
                "churn_risk": None,
                "risk_band": None,
                "listed": arm is not None,
                "arm": arm,
                "days_since_last_activity": days,
                "model_version": loaded.scorer.version,
                "features_as_of": row.as_of,
                "top_factors": None,
                "served_at": now,
            }
            if ok:
                risk, band, top = next(explained)
                body |= {"churn_risk": risk, "risk_band": band, "top_factors": top}
            out.append(body)
        ages = [(now - row.as_of).total_seconds() for row in rows if row.as_of is not None]
        self.metrics.answered(risks, bands, ages, lapsed=len(rows) - len(risks))
        return out

    async def _store_answers(self, loaded: Loaded) -> bool:
        try:
            await self.online.fetch([READINESS_ID], loaded.plan)
        except STORE_ERRORS:
            return False
        return True

    async def _probe(self) -> None:
        """Keep ``churn_api_ready`` current between scrapes (alerts read it, not /ready)."""
        while True:
            loaded = self.holder.current()
            ready = loaded is not None and await self._store_answers(loaded)
            self.metrics.ready.set(1.0 if ready else 0.0)
            await asyncio.sleep(READY_PROBE_SECONDS)

    def _fail(self, kind: str, detail: str) -> Unanswered:
        self.metrics.errors.labels(kind).inc()
        return Unanswered(kind, detail)

    def _unavailable(self, exc: BaseException) -> Unanswered:
        log.warning("online store unavailable: %s", type(exc).__name__)
        return self._fail("store_unavailable", "online store unavailable")
