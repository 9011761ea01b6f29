"""The promotion gate as a table: each row breaks one rule (or none) and says which."""

from __future__ import annotations

import json
import math

import pytest

from training.promotion import Decision, Floors, decide

FLOORS = Floors(pr_auc_lift=3.0, roc_auc=0.70, precision_at_k=0.40)
MARGIN = 0.005
GOOD = {"pr_auc": 0.612, "pr_auc_lift": 6.12, "roc_auc": 0.80, "precision_at_k": 0.50}
PROD = "20261120T040000Z-aaaaaaaa"
CAND = "20261126T044800Z-1a2b3c4d"


def metrics(**changes: float) -> dict:
    return GOOD | changes


@pytest.mark.parametrize(
    ("case", "candidate_metrics", "production", "production_metrics", "promote", "reason"),
    [
        ("first model", GOOD, None, None, True, "pass: no production model yet"),
        (
            "below PR-AUC lift floor",
            metrics(pr_auc_lift=2.5),
            None,
            None,
            False,
            "fail: PR-AUC lift 2.500 < floor 3.000",
        ),
        (
            "below ROC-AUC floor",
            metrics(roc_auc=0.69),
            None,
            None,
            False,
            "fail: ROC-AUC 0.690 < floor 0.700",
        ),
        (
            "below precision@K floor",
            metrics(precision_at_k=0.30),
            None,
            None,
            False,
            "fail: precision@K 0.300 < floor 0.400",
        ),
        (
            "metric missing",
            {"pr_auc": 0.7, "pr_auc_lift": 7.0, "roc_auc": 0.8},
            None,
            None,
            False,
            "fail: precision@K missing from the candidate's metrics (floor 0.400)",
        ),
        (
            "metric undefined",
            metrics(roc_auc=math.nan),
            None,
            None,
            False,
            "fail: ROC-AUC is nan (floor 0.700)",
        ),
        (
            "worse than production",
            GOOD,
            PROD,
            metrics(pr_auc=0.650),
            False,
            f"fail: does not beat production {PROD}: PR-AUC 0.612 vs 0.650 (-0.038 < margin 0.005)",
        ),
        (
            "better by less than the margin",
            GOOD,
            PROD,
            metrics(pr_auc=0.609),
            False,
            f"fail: does not beat production {PROD}: PR-AUC 0.612 vs 0.609 (+0.003 < margin 0.005)",
        ),
        (
            "better by exactly the margin",
            GOOD,
            PROD,
            metrics(pr_auc=0.607),
            True,
            f"pass: beats production {PROD}: PR-AUC 0.612 vs 0.607 (+0.005 ≥ margin 0.005)",
        ),
        (
            # 0.688 - 0.683 is 0.004999… in floating point: still exactly the margin.
            "exactly the margin, rounded below it",
            metrics(pr_auc=0.688),
            PROD,
            metrics(pr_auc=0.683),
            True,
            f"pass: beats production {PROD}: PR-AUC 0.688 vs 0.683 (+0.005 ≥ margin 0.005)",
        ),
        (
            "better by more than the margin",
            GOOD,
            PROD,
            metrics(pr_auc=0.598),
            True,
            f"pass: beats production {PROD}: PR-AUC 0.612 vs 0.598 (+0.014 ≥ margin 0.005)",
        ),
        (
            "better than production but below a floor",
            metrics(precision_at_k=0.1),
            PROD,
            metrics(pr_auc=0.5, precision_at_k=0.1),
            False,
            "fail: precision@K 0.100 < floor 0.400",
        ),
        (
            "already production",
            GOOD,
            CAND,
            GOOD,
            False,
            f"fail: candidate {CAND} already is production",
        ),
    ],
)
def test_decide(
    case: str,
    candidate_metrics: dict,
    production: str | None,
    production_metrics: dict | None,
    promote: bool,
    reason: str,
) -> None:
    decision = decide(CAND, candidate_metrics, production, production_metrics, FLOORS, MARGIN)
    assert decision.promote is promote, case
    assert reason in decision.reasons, decision.reasons
    # One reason per check: three floors and the comparison with production.
    assert len(decision.reasons) == 4
    assert decision.candidate == CAND
    assert decision.production == production


def test_every_check_is_reported_when_all_pass() -> None:
    decision = decide(CAND, GOOD, PROD, metrics(pr_auc=0.598), FLOORS, MARGIN)
    assert decision.reasons == [
        "pass: PR-AUC lift 6.120 ≥ floor 3.000",
        "pass: ROC-AUC 0.800 ≥ floor 0.700",
        "pass: precision@K 0.500 ≥ floor 0.400",
        f"pass: beats production {PROD}: PR-AUC 0.612 vs 0.598 (+0.014 ≥ margin 0.005)",
    ]


def test_failed_lists_only_the_failed_checks() -> None:
    decision = decide(CAND, metrics(precision_at_k=0.1, roc_auc=0.6), None, None, FLOORS, MARGIN)
    assert decision.failed == ["ROC-AUC 0.600 < floor 0.700", "precision@K 0.100 < floor 0.400"]
    assert decide(CAND, GOOD, None, None, FLOORS, MARGIN).failed == []


def test_production_without_metrics_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="validation window"):
        decide(CAND, GOOD, PROD, None, FLOORS, MARGIN)


def test_to_dict_is_json_ready() -> None:
    decision = decide(CAND, GOOD, None, None, FLOORS, MARGIN)
    payload = json.loads(json.dumps(decision.to_dict()))
    assert payload["promote"] is True
    assert payload["candidate"] == CAND
    assert payload["production"] is None
    assert payload["reasons"] == decision.reasons
    assert isinstance(decision, Decision)


def test_floors_from_settings(make_settings) -> None:
    settings = make_settings(min_pr_auc_lift=2.5, min_roc_auc=0.6, min_precision_at_k=0.3)
    assert Floors.from_settings(settings) == Floors(
        pr_auc_lift=2.5, roc_auc=0.6, precision_at_k=0.3
    )
