"""The promotion gate: a candidate replaces production only if it is sound and wins.

Pure logic, no I/O. Every check holds at any base rate, so a business where half the
users churn can pass it as well as one where a tenth do:

* ROC-AUC clears an absolute floor (ROC-AUC does not move with the base rate);
* PR-AUC skill, ``(PR-AUC − base rate) / (1 − base rate)``, clears a floor: the share of
  the possible gain over a random ranking, 0 for random and 1 for perfect at every base
  rate (a floor on PR-AUC / base rate is out of reach when the base rate is high);
* the candidate beats the recency-only reference (days since the last activity) on both
  PR-AUC and ROC-AUC by a margin: a model that cannot beat a one-feature rule on the same
  validation rows is not worth serving;
* when a production model exists, the candidate beats its PR-AUC by a margin on the same
  rows (the caller scores production on the candidate's validation window).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

# Metrics are stored rounded or summed in float; a difference equal to the margin
# up to this much counts as meeting it, so "+0.005 ≥ margin 0.005" never fails.
TOLERANCE = 1e-9
RECENCY = "recency"  # the key of the recency-only reference in a model's metadata


@dataclass(frozen=True)
class Gate:
    """The gate's thresholds, from the settings."""

    min_roc_auc: float
    min_pr_auc_skill: float
    recency_margin: float
    production_margin: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Gate:
        """``CHURN_MIN_ROC_AUC``, ``CHURN_MIN_PR_AUC_SKILL``, ``CHURN_RECENCY_MARGIN`` and
        ``CHURN_PROMOTION_MARGIN``."""
        return cls(
            min_roc_auc=settings.min_roc_auc,
            min_pr_auc_skill=settings.min_pr_auc_skill,
            recency_margin=settings.recency_margin,
            production_margin=settings.promotion_margin,
        )


@dataclass(frozen=True)
class Decision:
    """Whether to promote, with one human-readable reason per check (pass or fail)."""

    promote: bool
    reasons: list[str]
    candidate: str
    production: str | None

    @property
    def failed(self) -> list[str]:
        """The checks that failed, without their ``fail:`` prefix."""
        return [r.removeprefix("fail: ") for r in self.reasons if r.startswith("fail: ")]

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, for the promotion report and the CLI."""
        return asdict(self)


def decide(
    candidate: str,
    candidate_metrics: dict,
    references: dict | None,
    production: str | None,
    production_metrics: dict | None,
    gate: Gate,
) -> Decision:
    """Promote iff every check passes; one reason per check, in a fixed order.

    ``references`` are the reference scores evaluated on the candidate's validation rows
    (the ``references`` of its metadata); without a ``recency`` entry the two recency
    checks fail. ``production_metrics`` must be production evaluated on the same rows. A
    missing or non-finite metric fails its check. A candidate that already is production is
    never promoted.
    """
    if production is not None and production_metrics is None:
        raise ValueError(
            f"production {production} needs metrics on the candidate's validation window"
        )
    recency = (references or {}).get(RECENCY)
    checks = [
        _floor_check("ROC-AUC", candidate_metrics.get("roc_auc"), gate.min_roc_auc),
        _floor_check("PR-AUC skill", candidate_metrics.get("pr_auc_skill"), gate.min_pr_auc_skill),
    ]
    for key, name in (("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC")):
        if recency is None:
            checks.append((False, f"fail: cannot compare with the recency reference on {name}: "
                                  "the candidate's metadata has no recency reference"))  # fmt: skip
        else:
            checks.append(
                _beats_check(
                    "the recency reference",
                    name,
                    candidate_metrics.get(key),
                    recency.get(key),
                    gate.recency_margin,
                )
            )
    if production is None:
        checks.append((True, "pass: no production model yet"))
    elif candidate == production:
        checks.append((False, f"fail: candidate {candidate} already is production"))
    else:
        assert production_metrics is not None  # refused above when production has none
        checks.append(
            _beats_check(
                f"production {production}",
                "PR-AUC",
                candidate_metrics.get("pr_auc"),
                production_metrics.get("pr_auc"),
                gate.production_margin,
            )
        )
    return Decision(
        promote=all(ok for ok, _ in checks),
        reasons=[reason for _, reason in checks],
        candidate=candidate,
        production=production,
    )


def _floor_check(name: str, value: float | None, floor: float) -> tuple[bool, str]:
    if value is None:
        return False, f"fail: {name} missing from the candidate's metrics (floor {floor:.3f})"
    if not math.isfinite(value):
        return False, f"fail: {name} is {value} (floor {floor:.3f})"
    if value >= floor:
        return True, f"pass: {name} {value:.3f} ≥ floor {floor:.3f}"
    return False, f"fail: {name} {value:.3f} < floor {floor:.3f}"


def _beats_check(
    rival: str, name: str, value: float | None, rival_value: float | None, margin: float
) -> tuple[bool, str]:
    """Whether ``value`` beats ``rival_value`` (the same metric of ``rival``) by ``margin``."""
    if value is None or rival_value is None:
        return False, f"fail: cannot compare with {rival}: {name} missing"
    if not (math.isfinite(value) and math.isfinite(rival_value)):
        return False, f"fail: cannot compare with {rival}: {name} {value} vs {rival_value}"
    gain = value - rival_value
    numbers = f"{name} {value:.3f} vs {rival_value:.3f}"
    if gain >= margin - TOLERANCE:
        return True, f"pass: beats {rival}: {numbers} ({gain:+.3f} ≥ margin {margin:.3f})"
    return False, f"fail: does not beat {rival}: {numbers} ({gain:+.3f} < margin {margin:.3f})"
