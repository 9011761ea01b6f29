"""The demo does not depend on the date it runs: 14 consecutive end dates, one world, one verdict.

The default world's promotion is `test_demo`'s; here the pipeline (without serving) runs
as of 14 consecutive days at different times of day, on a world small enough to be quick.
The gate cannot pass on a world that small, for a reason the test checks (each validation
night has fewer churners than the precision@K floor needs), so it asserts the refusal.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from churn.demo import replay_demo
from churn.settings import Settings
from feature_repo.spec import TIMESTAMP_FIELD
from feature_repo.store import open_store
from training.labels import LABEL
from training.train import VALIDATION_ROWS

pytestmark = pytest.mark.integration
USERS, DAYS, DATES = 300, 120, 14
FIRST_RUN = date(2027, 2, 22)  # a run crosses a month's end and a year's short February
DEMO_FRESHNESS = Settings.model_fields["max_event_age_hours"].default


def test_fourteen_end_dates_give_the_same_metrics_and_the_same_refusal(tmp_path, isolated_settings):
    base = isolated_settings(tmp_path, max_event_age_hours=DEMO_FRESHNESS)
    try:
        runs = list(replay_demo(base, USERS, DAYS, FIRST_RUN, DATES, tmp_path))
    finally:
        open_store(base).teardown()

    first_now, first_settings, first = runs[0]
    for now, _, build in runs:
        shift = now.date() - first_now.date()
        assert build.last_day == first.last_day + shift
        assert build.trained.best == first.trained.best
        assert build.trained.rows == first.trained.rows
        assert build.trained.metrics == first.trained.metrics, now
        assert build.trained.references == first.trained.references, now
        decision = build.promoted.decision
        assert decision.reasons == first.promoted.decision.reasons, now
        assert not decision.promote
        assert any(r.startswith("precision@K") for r in decision.failed), decision.reasons

    # The refusal's reason, not luck: no night of this portal has enough churners to fill
    # the floor's share of a K-user list, whatever the model does.
    validation = pd.read_parquet(
        first_settings.models_dir / first.promoted.decision.candidate / VALIDATION_ROWS
    )
    churners_per_night = validation.groupby(TIMESTAMP_FIELD)[LABEL].sum()
    needed = first_settings.min_precision_at_k * first_settings.top_k
    assert churners_per_night.max() < needed, churners_per_night
