"""One user's (or a batch's) features from the online store, through Feast.

One FeatureStore per process, opened and warmed at start-up; a user is unknown
when the store holds none of the model's features for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from feast import FeatureStore

from churn.settings import Settings
from feature_repo.spec import ENTITY_KEY
from feature_repo.store import open_store

TIMESTAMP_SUFFIX = "__ts"


@dataclass(frozen=True)
class FeatureRow:
    values: dict[str, object]
    as_of: datetime | None


class OnlineFeatures:
    """Fetches feature rows by user id for a list of ``view:feature`` references."""

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        self.store = store or open_store(settings, redis_timeout_ms=settings.api_redis_timeout_ms)

    def fetch(self, user_ids: list[str], refs: list[str]) -> list[FeatureRow | None]:
        """Rows in the order of ``user_ids``; None where the store knows nothing of the user."""
        response = self.store.get_online_features(
            features=refs, entity_rows=[{ENTITY_KEY: u} for u in user_ids]
        ).to_dict(include_event_timestamps=True)
        names = [ref.split(":", 1)[1] for ref in refs]
        rows: list[FeatureRow | None] = []
        for i in range(len(user_ids)):
            values = {name: response[name][i] for name in names}
            if all(v is None for v in values.values()):
                rows.append(None)
                continue
            stamps = [response[f"{n}{TIMESTAMP_SUFFIX}"][i] for n in names]
            newest = max((s for s in stamps if s), default=None)
            as_of = datetime.fromtimestamp(newest, UTC) if newest else None
            rows.append(FeatureRow(values, as_of))
        return rows
