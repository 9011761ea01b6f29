"""Response bodies of the API (they become the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from churn.risk import RiskBand


class Factor(BaseModel):
    feature: str
    value: float | int | str | None
    effect: float = Field(description="How much this feature raises the risk (probability points)")


class ChurnRisk(BaseModel):
    user_id: str
    churn_risk: float = Field(ge=0, le=1, description="Calibrated probability of no activity ahead")
    risk_band: RiskBand
    model_version: str
    features_as_of: datetime | None
    top_factors: list[Factor]
    served_at: datetime


class Problem(BaseModel):
    detail: str


class BatchRequest(BaseModel):
    user_ids: list[str] = Field(min_length=1, description="Up to CHURN_API_BATCH_MAX ids")


class BatchItem(BaseModel):
    user_id: str
    result: ChurnRisk | None = None
    error: Literal["not_found", "stale_features"] | None = None
    detail: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
