"""A generated world as users × days arrays, and a night of it as the product sees one.

For tests whose verdicts need worlds of thousands of users over months (the calibration
check, the nightly estimate in the three worlds): the product's pure functions on these
nights take seconds, where the full pipeline (features, Feast, training) takes minutes per
world. A night follows the product's conventions: T is day ``t``, the features come from the
days before it, the population is the users active in the look-back, and the label is no
learning activity in [T, T + horizon).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from core.contract import ACTIVE_EVENT_TYPES
from core.settings import Settings
from ingestion.generate import GeneratedData, generate_demo_data

START = date(2024, 1, 1)
LABEL_DAYS = Settings.model_fields["horizon_days"].default  # 30
LOOKBACK = Settings.model_fields["active_lookback_days"].default  # 14
FEATURES = ("active_days_7d", "active_days_30d", "logins_7d", "watch_minutes_30d",
            "days_since_last_activity")  # fmt: skip

Daily = tuple[np.ndarray, np.ndarray, np.ndarray]


def world_days(scenario: str, users: int, days: int, seed: int, drift_day: int) -> Daily:
    """The generated world (``churn data generate``'s generator) as daily arrays."""
    data = generate_demo_data(n_users=users, days=days, seed=seed, start=START,
                              scenario=scenario, drift_day=drift_day)  # fmt: skip
    return daily_arrays(data, days)


def daily_arrays(data: GeneratedData, days: int) -> Daily:
    """users × days: active (a learning event), logins, watch minutes."""
    events = data.events
    day = (events["event_time"] - pd.Timestamp(START, tz="UTC")).dt.days.to_numpy()
    user = events["user_id"].str[1:].astype(int).to_numpy()
    shape = (len(data.users), days)
    active, logins, watch = np.zeros(shape, bool), np.zeros(shape), np.zeros(shape)
    learning = events["event_type"].isin(ACTIVE_EVENT_TYPES).to_numpy()
    active[user[learning], day[learning]] = True
    is_login = (events["event_type"] == "login").to_numpy()
    np.add.at(logins, (user[is_login], day[is_login]), 1)
    is_video = (events["event_type"] == "video_watch").to_numpy()
    np.add.at(watch, (user[is_video], day[is_video]), events["watch_minutes"].to_numpy()[is_video])
    return active, logins, watch


def night(daily: Daily, t: int) -> pd.DataFrame:
    """The population at T = day ``t`` (active in the look-back), a few features from the
    days before T, and the label: no active day in [T, T + horizon)."""
    active, logins, watch = daily
    last = t - 1 - np.argmax(active[:, :t][:, ::-1], axis=1)
    frame = pd.DataFrame(
        {
            "active_days_7d": active[:, t - 7 : t].sum(1),
            "active_days_30d": active[:, t - 30 : t].sum(1),
            "logins_7d": logins[:, t - 7 : t].sum(1),
            "watch_minutes_30d": watch[:, t - 30 : t].sum(1),
            "days_since_last_activity": t - last,
            "churned": (~active[:, t : t + LABEL_DAYS].any(1)).astype(int),
        }
    )
    return frame[active[:, t - LOOKBACK : t].any(1)]


def fit_on(daily: Daily, nights: range) -> LogisticRegression:
    """A logistic model on ``FEATURES`` (log1p) over the given nights' rows and labels."""
    rows = pd.concat([night(daily, t) for t in nights])
    return LogisticRegression(max_iter=1000).fit(features(rows), rows["churned"])


def features(rows: pd.DataFrame) -> np.ndarray:
    return np.log1p(rows[list(FEATURES)].to_numpy(dtype=float))
