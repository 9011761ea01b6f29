"""The retention team's list: the top K by churn risk plus everyone in the high band.

Each row carries what the user pays, so the team can sort by revenue at risk instead
of by probability alone: a likely churner on the free plan costs less than a paying one.
And its arm (``served.arms``): the team contacts the ``contact`` arm and leaves the
``holdout`` arm alone, so that the uplift report can tell whether contacting works.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from core.contract import UNKNOWN
from core.settings import Settings
from core.sql_engine import Engine
from core.tables import EVENTS, USERS, register_validated
from feature_repo.spec import ENTITY_KEY
from served.arms import assign_arms

# Three billing months: monthly revenue = the successful payments of the 90 days before T / 3,
# so a user billed on the 31st or retried after a failure is not counted twice or missed.
REVENUE_DAYS = 90
REVENUE_MONTHS = 3
HIGH_RISK_COLUMNS = [
    "rank",
    ENTITY_KEY,
    "churn_risk",
    "risk_band",
    "arm",
    "plan",
    "monthly_revenue",
    "expected_revenue_at_risk",
    "model_version",
]


def select_high_risk(predictions: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Rows ranked within ``top_k`` or in the high band, in rank order (rank 1 = riskiest)."""
    keep = (predictions["rank"] <= top_k) | (predictions["risk_band"] == "high")
    return predictions.loc[keep].sort_values("rank").reset_index(drop=True)


def revenue_sql(as_of: datetime, selected: str = "selected") -> str:
    """Plan and monthly revenue of the users in the relation ``selected`` (one ``user_id`` column).

    Reads the validated ``USERS`` and ``EVENTS``. Revenue is
    the ``amount`` of ``payment_success`` events in [T - 90 days, T) / 3, as
    ``payments_ok`` and ``amount_paid`` count them in the daily table: failed payments
    earn nothing. Users without payments get 0, users missing from ``users`` get
    ``unknown`` as their plan.
    """
    start = as_of - timedelta(days=REVENUE_DAYS)
    return f"""
WITH paid AS (
    SELECT user_id, sum(amount) AS amount
    FROM {EVENTS}
    WHERE event_type = 'payment_success'
      AND event_time >= TIMESTAMPTZ '{start.isoformat()}'
      AND event_time < TIMESTAMPTZ '{as_of.isoformat()}'
      AND user_id IN (SELECT {ENTITY_KEY} FROM {selected})
    GROUP BY user_id
)
SELECT
    s.{ENTITY_KEY},
    coalesce(u.plan, '{UNKNOWN}') AS plan,
    coalesce(p.amount, 0) / {REVENUE_MONTHS} AS monthly_revenue
FROM {selected} s
LEFT JOIN {USERS} u ON u.user_id = s.{ENTITY_KEY}
LEFT JOIN paid p ON p.user_id = s.{ENTITY_KEY}
"""


def with_revenue(selected: pd.DataFrame, revenue: pd.DataFrame) -> pd.DataFrame:
    """``selected`` with plan, monthly revenue and expected revenue at risk, in rank order.

    Expected revenue at risk = churn risk × monthly revenue, and 0 on the free plan (a
    free user who still shows payments in the window has just downgraded: nothing more
    to lose). Money is rounded to cents.
    """
    out = selected.merge(revenue, on=ENTITY_KEY, how="left", validate="one_to_one")
    out["plan"] = out["plan"].fillna(UNKNOWN)
    out["monthly_revenue"] = out["monthly_revenue"].fillna(0.0).astype(float).round(2)
    at_risk = (out["churn_risk"] * out["monthly_revenue"]).round(2)
    out["expected_revenue_at_risk"] = at_risk.where(out["plan"] != "free", 0.0)
    return out.sort_values("rank").reset_index(drop=True)[HIGH_RISK_COLUMNS]


def high_risk_list(
    settings: Settings, engine: Engine, predictions: pd.DataFrame, as_of: datetime
) -> pd.DataFrame:
    """The list for ``high_risk.csv``: selection by rank and band, arm, plan and revenue at T."""
    selected = select_high_risk(predictions, settings.top_k)
    selected["arm"] = assign_arms(
        selected[ENTITY_KEY], as_of.date(), settings.holdout_share, settings.holdout_period_days
    )
    register_validated(engine, settings)
    engine.register_frame("selected", selected[[ENTITY_KEY]])
    return with_revenue(selected, engine.frame(revenue_sql(as_of)))
