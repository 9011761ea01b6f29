"""The production model of this worker, reloaded when the production alias moves.

``watch`` checks ``production.json`` every ``model_reload_seconds`` and loads a
new version in a thread, off the event loop: requests keep scoring with the
previous model until the new one is compiled, verified and resolved against the
feature store, then switch with one assignment. A model that fails any of these
is refused with a log line and the previous one keeps serving; the same version is tried
again after a back-off (5 s, doubling up to 5 min), so a passing cause (a registry read
mid-write, a store not up yet) does not keep it out until the alias moves again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from online_api.compiled_model import Scorer
from served import registry
from served.card import ModelCard, load_served

log = logging.getLogger(__name__)
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0


@dataclass(frozen=True)
class Loaded:
    scorer: Scorer
    card: ModelCard
    plan: Any = None  # what ``resolve`` made of the card (the features to fetch)


class ModelHolder:
    """Holds the compiled production model; ``current()`` is what a request scores with.

    ``resolve(card)`` prepares what serving needs besides the model (the API
    resolves the model's feature service); when it raises, the model is refused.
    """

    def __init__(
        self,
        settings: Settings,
        resolve: Callable[[ModelCard], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        self._clock = clock
        self._alias = settings.models_dir / registry.PRODUCTION_FILE
        self._loaded: Loaded | None = None
        self._seen: tuple[float, int, int] | None = None
        self._retry_at: float | None = None  # a refused version is tried again then
        self._backoff = RETRY_FIRST_SECONDS
        self._lock = threading.Lock()
        self.checks = 0  # completed ``refresh`` calls: tests wait on it, not on a clock

    def current(self) -> Loaded | None:
        """The model to score with now (None before any production model exists)."""
        return self._loaded

    def refresh(self) -> None:
        """Load the aliased version if the alias changed since the last look."""
        try:
            self._load_if_moved()
        finally:
            self.checks += 1

    def _load_if_moved(self) -> None:
        try:
            stat = self._alias.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # the alias is replaced by rename
        if seen == self._seen and not self._retry_due():
            return
        with self._lock:
            if seen == self._seen and not self._retry_due():
                return
            if seen != self._seen:
                self._backoff = RETRY_FIRST_SECONDS
            self._seen, self._retry_at = seen, None
            version = registry.production(self._settings.models_dir)
            if version is None or (self._loaded and self._loaded.scorer.version == version):
                return
            try:
                model, card = load_served(self._settings.models_dir, version)
                scorer = Scorer.from_model(model, dict(card.metadata))
                plan = self._resolve(card) if self._resolve else None
            except Exception as exc:
                keeping = self._loaded.scorer.version if self._loaded else "none"
                log.error("refusing model %s: %s: %s; keeping %s; trying again in %.0f s",
                          version, type(exc).__name__, exc, keeping, self._backoff)  # fmt: skip
                self._retry_at = self._clock() + self._backoff
                self._backoff = min(self._backoff * 2, RETRY_MAX_SECONDS)
                return
            self._loaded = Loaded(scorer, card, plan)
            log.info("serving model %s (%s)", version, card.model_kind)

    def _retry_due(self) -> bool:
        return self._retry_at is not None and self._clock() >= self._retry_at

    async def watch(self) -> None:
        """Follow the alias until cancelled; each check runs in a thread."""
        while True:
            await asyncio.sleep(self._settings.model_reload_seconds)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a failing disk must not end the watch
                log.exception("checking the production alias failed")
