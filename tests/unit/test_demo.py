"""What the demo prints of an answer."""

from __future__ import annotations

from churn.demo import answer_line


def test_the_demo_line_shows_listed_and_the_arm_only_when_listed():
    body = {"churn_risk": 0.04, "risk_band": "low", "listed": False, "arm": None,
            "top_factors": [{"feature": "logins_7d"}]}  # fmt: skip
    assert answer_line(body) == (
        "  → churn_risk 0.040 (low), listed false, arm null; top factors: logins_7d"
    )
    listed = body | {"listed": True, "arm": "holdout", "top_factors": []}
    assert answer_line(listed) == (
        "  → churn_risk 0.040 (low), listed true, arm holdout; top factors: none"
    )
