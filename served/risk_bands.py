"""Risk bands: where the retention team's attention starts (thresholds in settings)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from core.settings import Settings

RiskBand = Literal["low", "medium", "high"]


def risk_band(risk: float, settings: Settings) -> RiskBand:
    if risk >= settings.risk_band_high:
        return "high"
    return "medium" if risk >= settings.risk_band_medium else "low"


def risk_bands(risks: np.ndarray, settings: Settings) -> np.ndarray:
    """``risk_band`` of every element, vectorised (batch scoring)."""
    return np.select(
        [risks >= settings.risk_band_high, risks >= settings.risk_band_medium],
        ["high", "medium"],
        "low",
    )
