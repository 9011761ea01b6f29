"""Response bodies of the API (they become the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from served.arms import Arm
from served.risk_bands import RiskBand

AnswerStatus = Literal["scored", "lapsed"]

SCORED_EXAMPLE: JsonDict = {
    "user_id": "u000123",
    "status": "scored",
    "churn_risk": 0.62,
    "risk_band": "high",
    "listed": True,
    "arm": "contact",
    "days_since_last_activity": 5,
    "model_version": "20260228T023000Z-3f9c1a2b",
    "features_as_of": "2026-03-01T00:00:00Z",
    "top_factors": [
        {"feature": "days_since_last_activity", "value": 5, "effect": 0.21},
        {"feature": "logins_7d", "value": 0, "effect": 0.08},
    ],
    "served_at": "2026-03-01T09:12:44.123456Z",
}
LAPSED_EXAMPLE: JsonDict = {
    "user_id": "u000456",
    "status": "lapsed",
    "churn_risk": None,
    "risk_band": None,
    "listed": False,
    "arm": None,
    "days_since_last_activity": 98,
    "model_version": "20260228T023000Z-3f9c1a2b",
    "features_as_of": "2026-03-01T00:00:00Z",
    "top_factors": None,
    "served_at": "2026-03-01T09:12:44.123456Z",
}


# The single endpoint's named examples (Swagger UI offers each by its summary).
ANSWER_EXAMPLES = {
    "scored": {"summary": "in the scored population: a risk", "value": SCORED_EXAMPLE},
    "lapsed": {"summary": "outside it: no risk, the days since the last activity",
               "value": LAPSED_EXAMPLE},
}  # fmt: skip


class Factor(BaseModel):
    feature: str
    value: float | int | str | None
    effect: float = Field(description="How much this feature raises the risk (probability points)")


class ChurnRisk(BaseModel):
    """One user's answer: a risk when the user is in the scored population, else why not."""

    model_config = ConfigDict(json_schema_extra={"examples": [SCORED_EXAMPLE, LAPSED_EXAMPLE]})

    user_id: str
    status: AnswerStatus = Field(
        description="scored: active at least once in the CHURN_ACTIVE_LOOKBACK_DAYS days "
        "before features_as_of, the population the model learned from; churn_risk, risk_band "
        "and top_factors hold its answer. lapsed: last active longer ago (outside the scored "
        "population); the model never learned from such users, so any probability would be "
        "an extrapolation: churn_risk, risk_band and top_factors are null."
    )
    churn_risk: float | None = Field(
        ge=0, le=1,
        description="Calibrated probability of no learning activity in the next "
        "CHURN_HORIZON_DAYS days; null when lapsed",
    )  # fmt: skip
    risk_band: RiskBand | None = Field(
        description="The risk's band (CHURN_RISK_BAND_MEDIUM/_HIGH); null when lapsed"
    )
    listed: bool = Field(
        description="Whether the user is on the newest night's outreach list (the nightly "
        "batch's high_risk.csv, read by the API within CHURN_OUTREACH_RELOAD_SECONDS of its "
        "writing); the retention team contacts listed users only"
    )
    arm: Arm | None = Field(
        description="The user's arm on that list, only when listed (else null): contact, or "
        "holdout (CHURN_HOLDOUT_SHARE), which must not be contacted, whatever the risk. A user "
        "on no list has no arm and is not to be contacted either"
    )
    days_since_last_activity: int = Field(
        ge=0,
        description="Days from the last active day (the signup day if never active) to the "
        "last day the features cover, the day before features_as_of",
    )
    model_version: str = Field(description="The production model that answered")
    features_as_of: datetime | None = Field(
        description="Stamp of the features answered from: those of day D are stamped D+1 00:00 UTC"
    )
    top_factors: list[Factor] | None = Field(
        description="Up to three features raising the risk most; null when lapsed"
    )
    served_at: datetime

    @model_validator(mode="after")
    def _arm_only_when_listed(self) -> ChurnRisk:
        if self.listed != (self.arm is not None):
            raise ValueError("a listed answer has an arm, an unlisted one none")
        return self

    @model_validator(mode="after")
    def _risk_only_when_scored(self) -> ChurnRisk:
        given = [self.churn_risk is not None, self.risk_band is not None,
                 self.top_factors is not None]  # fmt: skip
        if self.status == "scored" and not all(given):
            raise ValueError("a scored answer has churn_risk, risk_band and top_factors")
        if self.status == "lapsed" and any(given):
            raise ValueError("a lapsed answer has no churn_risk, risk_band or top_factors")
        return self


class Problem(BaseModel):
    detail: str


class BatchRequest(BaseModel):
    user_ids: list[str] = Field(min_length=1, description="Up to CHURN_API_BATCH_MAX ids")


class BatchItem(BaseModel):
    user_id: str
    result: ChurnRisk | None = Field(
        None, description="The answer GET /users/{user_id}/churn-risk gives (scored or lapsed)"
    )
    error: Literal["not_found", "stale_features"] | None = Field(
        None, description="Why there is no answer: the 404s of the single endpoint"
    )
    detail: str | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"user_id": "u000123", "result": SCORED_EXAMPLE},
                        {"user_id": "u000456", "result": LAPSED_EXAMPLE},
                        {
                            "user_id": "nobody-here",
                            "result": None,
                            "error": "not_found",
                            "detail": "user nobody-here has no features in the online store",
                        },
                    ]
                }
            ]
        }
    )

    results: list[BatchItem]


def with_example_nulls(document: dict) -> dict:
    """``document`` (FastAPI's OpenAPI) with the examples' nulls back in place.

    FastAPI leaves every None out of the document, so the lapsed example would show
    no ``churn_risk`` at all where the API answers ``"churn_risk": null``.
    """
    schemas = document["components"]["schemas"]
    for model in (ChurnRisk, BatchResponse):
        schemas[model.__name__]["examples"] = model.model_json_schema()["examples"]
    single = document["paths"]["/users/{user_id}/churn-risk"]["get"]["responses"]["200"]
    single["content"]["application/json"]["examples"] = ANSWER_EXAMPLES
    return document
