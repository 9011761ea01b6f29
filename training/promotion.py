"""The promotion gate: a candidate replaces production only if it clears every floor and wins.

Pure logic, no I/O: the caller evaluates the candidate and the production model on
the same validation window (the candidate's newest) and passes both metric dicts in,
so the comparison is like for like.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from churn.settings import Settings

# Metric key → how a reason names it.
# The PR-AUC floor is a lift over the validation base rate: an absolute PR-AUC means
# little when the share of churners moves (0.60 is out of reach at a 9% base rate
# even for an oracle that sees the hidden state; see the README).
METRIC_NAMES = {
    "pr_auc_lift": "PR-AUC lift",
    "roc_auc": "ROC-AUC",
    "precision_at_k": "precision@K",
}
# Metrics are stored rounded or summed in float; a difference equal to the margin
# up to this much counts as meeting it, so "+0.005 ≥ margin 0.005" never fails.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Floors:
    """The minimum every promoted model must reach, whatever production does."""

    pr_auc_lift: float
    roc_auc: float
    precision_at_k: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Floors:
        """The floors ``CHURN_MIN_PR_AUC_LIFT``, ``…_ROC_AUC``, ``…_PRECISION_AT_K``."""
        return cls(
            pr_auc_lift=settings.min_pr_auc_lift,
            roc_auc=settings.min_roc_auc,
            precision_at_k=settings.min_precision_at_k,
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
    production: str | None,
    production_metrics: dict | None,
    floors: Floors,
    margin: float,
) -> Decision:
    """Promote iff every floor passes and (no production or PR-AUC ≥ production's + margin).

    ``production_metrics`` must be production evaluated on the candidate's validation
    window. A missing or non-finite metric fails its floor. A candidate that already is
    production is never promoted.
    """
    if production is not None and production_metrics is None:
        raise ValueError(
            f"production {production} needs metrics on the candidate's validation window"
        )
    reasons = []
    passed = True
    for key, name in METRIC_NAMES.items():
        ok, reason = _floor_check(name, candidate_metrics.get(key), getattr(floors, key))
        passed &= ok
        reasons.append(reason)

    if production is None:
        reasons.append("pass: no production model yet")
    elif candidate == production:
        passed = False
        reasons.append(f"fail: candidate {candidate} already is production")
    else:
        ok, reason = _beats_check(
            production, candidate_metrics.get("pr_auc"), production_metrics.get("pr_auc"), margin
        )
        passed &= ok
        reasons.append(reason)
    return Decision(promote=passed, reasons=reasons, candidate=candidate, production=production)


def _floor_check(name: str, value: float | None, floor: float) -> tuple[bool, str]:
    if value is None:
        return False, f"fail: {name} missing from the candidate's metrics (floor {floor:.3f})"
    if not math.isfinite(value):
        return False, f"fail: {name} is {value} (floor {floor:.3f})"
    if value >= floor:
        return True, f"pass: {name} {value:.3f} ≥ floor {floor:.3f}"
    return False, f"fail: {name} {value:.3f} < floor {floor:.3f}"


def _beats_check(
    production: str, candidate_pr_auc: float | None, production_pr_auc: float | None, margin: float
) -> tuple[bool, str]:
    if candidate_pr_auc is None or production_pr_auc is None:
        return False, f"fail: cannot compare with production {production}: PR-AUC missing"
    gain = candidate_pr_auc - production_pr_auc
    numbers = f"PR-AUC {candidate_pr_auc:.3f} vs {production_pr_auc:.3f}"
    if gain >= margin - TOLERANCE:
        return (
            True,
            f"pass: beats production {production}: {numbers} ({gain:+.3f} ≥ margin {margin:.3f})",
        )
    return (
        False,
        f"fail: does not beat production {production}: {numbers} ({gain:+.3f} < margin {margin:.3f})",
    )
