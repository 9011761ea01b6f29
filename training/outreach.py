"""The contacts training leaves out: every night a user was on the holdout experiment's
contact arm (``served.arms``). A (user, T) whose label window outreach touched must not
teach the model that such users stay (``training.labels``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from core import partitions
from core.settings import Settings
from feature_repo.spec import ENTITY_KEY
from served.arms import CONTACT, assignment_days


def contacts(settings: Settings) -> pd.DataFrame:
    """``user_id, date``: every night a user was on the contact arm, oldest first."""
    files = partitions.partition_files(settings.outreach_dir, assignment_days(settings))
    frames = [
        pd.read_parquet(f, columns=[ENTITY_KEY, "arm"]).assign(
            date=date.fromisoformat(Path(f).parent.name.split("=", 1)[1])
        )
        for f in files
    ]
    if not frames:
        return pd.DataFrame({ENTITY_KEY: pd.Series(dtype=str), "date": pd.Series(dtype=object)})
    every = pd.concat(frames, ignore_index=True)
    return every.loc[every["arm"] == CONTACT, [ENTITY_KEY, "date"]].reset_index(drop=True)
