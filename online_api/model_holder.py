"""The production model of this worker, reloaded when the production alias moves.

Each worker checks ``production.json`` at most every ``model_reload_seconds``
(a stat, on the request path, no thread). A model that fails to load is refused
with a log line and the previous one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from churn.settings import Settings
from online_api.scorer import Scorer
from training import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    scorer: Scorer
    metadata: dict


class ModelHolder:
    """Holds the compiled production model; ``current()`` is what a request scores with."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._alias = settings.models_dir / registry.PRODUCTION_FILE
        self._loaded: Loaded | None = None
        self._seen: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> Loaded | None:
        """The model to score with now (None before any production model exists)."""
        now = time.monotonic()
        if now - self._checked >= self._settings.model_reload_seconds:
            self._checked = now
            self.refresh()
        return self._loaded

    def refresh(self) -> None:
        """Load the aliased version if the alias changed since the last look."""
        try:
            stat = self._alias.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_mtime, stat.st_size)
        if seen == self._seen:
            return
        with self._lock:
            if seen == self._seen:
                return
            self._seen = seen
            version = registry.production(self._settings.models_dir)
            if version is None or (self._loaded and self._loaded.scorer.version == version):
                return
            try:
                model, metadata = registry.load_model(self._settings.models_dir, version)
                scorer = Scorer.from_model(model, metadata)
            except Exception:
                log.exception("refusing model %s: it cannot be loaded; keeping %s", version,
                              self._loaded.scorer.version if self._loaded else "none")  # fmt: skip
                return
            self._loaded = Loaded(scorer, metadata)
            log.info("serving model %s (%s)", version, metadata.get("model_kind"))
