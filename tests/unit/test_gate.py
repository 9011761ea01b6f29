"""The promotion gate as a table: each row breaks one rule (or none) and says which."""

from __future__ import annotations

import json
import math

import pytest

from training.evaluation import pr_auc_skill
from training.gate import Decision, Gate, decide

# The defaults of the settings (test_the_default_gate_… checks the settings against the table).
GATE = Gate(min_roc_auc=0.70, min_pr_auc_skill=0.15, recency_margin=0.005, production_margin=0.005)
# The demo world's logistic model beside its recency reference, on the same rows.
GOOD = {"pr_auc": 0.382, "pr_auc_skill": 0.311, "roc_auc": 0.844, "base_rate": 0.103}
RECENCY = {"pr_auc": 0.364, "roc_auc": 0.823, "base_rate": 0.103}
REFERENCES = {"recency": RECENCY, "base_rate": {"pr_auc": 0.103, "roc_auc": 0.5}}
PROD = "20261120T040000Z-aaaaaaaa"
CAND = "20261126T044800Z-1a2b3c4d"


def metrics(**changes: float) -> dict:
    return GOOD | changes


def recency(**changes: float) -> dict:
    return REFERENCES | {"recency": RECENCY | changes}


def at_base_rate(pr_auc: float, roc_auc: float, base_rate: float) -> dict:
    return {"pr_auc": pr_auc, "pr_auc_skill": pr_auc_skill(pr_auc, base_rate),
            "roc_auc": roc_auc, "base_rate": base_rate}  # fmt: skip


# Half the users churn: PR-AUC / base rate is at most 1 / 0.52 = 1.92 here.
HIGH_CHURN = at_base_rate(pr_auc=0.71, roc_auc=0.76, base_rate=0.52)
HIGH_CHURN_REFERENCES = {"recency": {"pr_auc": 0.66, "roc_auc": 0.71, "base_rate": 0.52}}
# A model trained on labels shuffled within each as-of time: random, whatever the base rate.
SHUFFLED = at_base_rate(pr_auc=0.101, roc_auc=0.495, base_rate=0.103)
SHUFFLED_REFERENCES = {"recency": {"pr_auc": 0.107, "roc_auc": 0.513, "base_rate": 0.103}}


@pytest.mark.parametrize(
    (
        "case",
        "candidate_metrics",
        "references",
        "production",
        "production_metrics",
        "promote",
        "reason",
    ),
    [
        ("first model", GOOD, REFERENCES, None, None, True, "pass: no production model yet"),
        ("ROC-AUC floor", GOOD, REFERENCES, None, None, True, "pass: ROC-AUC 0.844 ≥ floor 0.700"),
        (
            "below the ROC-AUC floor",
            metrics(roc_auc=0.69),
            recency(roc_auc=0.60),
            None,
            None,
            False,
            "fail: ROC-AUC 0.690 < floor 0.700",
        ),
        (
            "at the ROC-AUC floor",
            metrics(roc_auc=0.70),
            recency(roc_auc=0.60),
            None,
            None,
            True,
            "pass: ROC-AUC 0.700 ≥ floor 0.700",
        ),
        (
            "PR-AUC skill floor",
            GOOD,
            REFERENCES,
            None,
            None,
            True,
            "pass: PR-AUC skill 0.311 ≥ floor 0.150",
        ),
        (
            "below the PR-AUC skill floor",
            metrics(pr_auc_skill=0.12),
            REFERENCES,
            None,
            None,
            False,
            "fail: PR-AUC skill 0.120 < floor 0.150",
        ),
        (
            "skill missing (a model trained before the skill was measured)",
            {"pr_auc": 0.382, "roc_auc": 0.844},
            REFERENCES,
            None,
            None,
            False,
            "fail: PR-AUC skill missing from the candidate's metrics (floor 0.150)",
        ),
        (
            "metric undefined",
            metrics(roc_auc=math.nan),
            REFERENCES,
            None,
            None,
            False,
            "fail: ROC-AUC is nan (floor 0.700)",
        ),
        (
            "beats recency on PR-AUC",
            GOOD,
            REFERENCES,
            None,
            None,
            True,
            "pass: beats the recency reference: PR-AUC 0.382 vs 0.364 (+0.018 ≥ margin 0.005)",
        ),
        (
            "beats recency on ROC-AUC",
            GOOD,
            REFERENCES,
            None,
            None,
            True,
            "pass: beats the recency reference: ROC-AUC 0.844 vs 0.823 (+0.021 ≥ margin 0.005)",
        ),
        (
            "worse than recency on PR-AUC",
            GOOD,
            recency(pr_auc=0.40),
            None,
            None,
            False,
            "fail: does not beat the recency reference: PR-AUC 0.382 vs 0.400 (-0.018 < margin 0.005)",
        ),
        (
            "better than recency on PR-AUC by less than the margin",
            GOOD,
            recency(pr_auc=0.379),
            None,
            None,
            False,
            "fail: does not beat the recency reference: PR-AUC 0.382 vs 0.379 (+0.003 < margin 0.005)",
        ),
        (
            "better than recency on PR-AUC by exactly the margin",
            GOOD,
            recency(pr_auc=0.377),
            None,
            None,
            True,
            "pass: beats the recency reference: PR-AUC 0.382 vs 0.377 (+0.005 ≥ margin 0.005)",
        ),
        (
            "better than recency on ROC-AUC by less than the margin",
            GOOD,
            recency(roc_auc=0.841),
            None,
            None,
            False,
            "fail: does not beat the recency reference: ROC-AUC 0.844 vs 0.841 (+0.003 < margin 0.005)",
        ),
        (
            "better than recency on ROC-AUC by exactly the margin",
            GOOD,
            recency(roc_auc=0.839),
            None,
            None,
            True,
            "pass: beats the recency reference: ROC-AUC 0.844 vs 0.839 (+0.005 ≥ margin 0.005)",
        ),
        (
            "no references in the metadata",
            GOOD,
            None,
            None,
            None,
            False,
            "fail: cannot compare with the recency reference on PR-AUC: "
            "the candidate's metadata has no recency reference",
        ),
        (
            "references without recency",
            GOOD,
            {"base_rate": REFERENCES["base_rate"]},
            None,
            None,
            False,
            "fail: cannot compare with the recency reference on ROC-AUC: "
            "the candidate's metadata has no recency reference",
        ),
        (
            "recency reference without ROC-AUC",
            GOOD,
            {"recency": {"pr_auc": 0.364}},
            None,
            None,
            False,
            "fail: cannot compare with the recency reference: ROC-AUC missing",
        ),
        (
            "worse than production",
            GOOD,
            REFERENCES,
            PROD,
            metrics(pr_auc=0.400),
            False,
            f"fail: does not beat production {PROD}: PR-AUC 0.382 vs 0.400 (-0.018 < margin 0.005)",
        ),
        (
            "better than production by less than the margin",
            GOOD,
            REFERENCES,
            PROD,
            metrics(pr_auc=0.379),
            False,
            f"fail: does not beat production {PROD}: PR-AUC 0.382 vs 0.379 (+0.003 < margin 0.005)",
        ),
        (
            "better than production by exactly the margin",
            GOOD,
            REFERENCES,
            PROD,
            metrics(pr_auc=0.377),
            True,
            f"pass: beats production {PROD}: PR-AUC 0.382 vs 0.377 (+0.005 ≥ margin 0.005)",
        ),
        (
            # 0.688 - 0.683 is 0.004999… in floating point: still exactly the margin.
            "exactly the margin, rounded below it",
            metrics(pr_auc=0.688),
            REFERENCES,
            PROD,
            metrics(pr_auc=0.683),
            True,
            f"pass: beats production {PROD}: PR-AUC 0.688 vs 0.683 (+0.005 ≥ margin 0.005)",
        ),
        (
            "better than production but below a floor",
            metrics(pr_auc_skill=0.1),
            REFERENCES,
            PROD,
            metrics(pr_auc=0.3),
            False,
            "fail: PR-AUC skill 0.100 < floor 0.150",
        ),
        (
            "already production",
            GOOD,
            REFERENCES,
            CAND,
            GOOD,
            False,
            f"fail: candidate {CAND} already is production",
        ),
        (
            "high base rate: a good model passes the skill floor",
            HIGH_CHURN,
            HIGH_CHURN_REFERENCES,
            None,
            None,
            True,
            "pass: PR-AUC skill 0.396 ≥ floor 0.150",
        ),
        (
            "high base rate: a good model is promoted",
            HIGH_CHURN,
            HIGH_CHURN_REFERENCES,
            None,
            None,
            True,
            "pass: beats the recency reference: PR-AUC 0.710 vs 0.660 (+0.050 ≥ margin 0.005)",
        ),
        (
            "shuffled labels: random ranking fails the skill floor",
            SHUFFLED,
            SHUFFLED_REFERENCES,
            None,
            None,
            False,
            "fail: PR-AUC skill -0.002 < floor 0.150",
        ),
        (
            "shuffled labels: random ranking fails the ROC-AUC floor",
            SHUFFLED,
            SHUFFLED_REFERENCES,
            None,
            None,
            False,
            "fail: ROC-AUC 0.495 < floor 0.700",
        ),
    ],
)
def test_decide(
    case: str,
    candidate_metrics: dict,
    references: dict | None,
    production: str | None,
    production_metrics: dict | None,
    promote: bool,
    reason: str,
) -> None:
    decision = decide(CAND, candidate_metrics, references, production, production_metrics, GATE)
    assert decision.promote is promote, (case, decision.reasons)
    assert reason in decision.reasons, decision.reasons
    # One reason per check: two floors, recency on two metrics, and production.
    assert len(decision.reasons) == 5
    assert decision.candidate == CAND
    assert decision.production == production


def test_every_check_is_reported_in_order_when_all_pass() -> None:
    decision = decide(CAND, GOOD, REFERENCES, PROD, metrics(pr_auc=0.370), GATE)
    assert decision.reasons == [
        "pass: ROC-AUC 0.844 ≥ floor 0.700",
        "pass: PR-AUC skill 0.311 ≥ floor 0.150",
        "pass: beats the recency reference: PR-AUC 0.382 vs 0.364 (+0.018 ≥ margin 0.005)",
        "pass: beats the recency reference: ROC-AUC 0.844 vs 0.823 (+0.021 ≥ margin 0.005)",
        f"pass: beats production {PROD}: PR-AUC 0.382 vs 0.370 (+0.012 ≥ margin 0.005)",
    ]


def test_failed_lists_only_the_failed_checks() -> None:
    decision = decide(CAND, metrics(pr_auc_skill=0.1, roc_auc=0.6), REFERENCES, None, None, GATE)
    assert decision.failed == [
        "ROC-AUC 0.600 < floor 0.700",
        "PR-AUC skill 0.100 < floor 0.150",
        "does not beat the recency reference: ROC-AUC 0.600 vs 0.823 (-0.223 < margin 0.005)",
    ]
    assert decide(CAND, GOOD, REFERENCES, None, None, GATE).failed == []


def test_production_without_metrics_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="validation window"):
        decide(CAND, GOOD, REFERENCES, PROD, None, GATE)


def test_to_dict_is_json_ready() -> None:
    decision = decide(CAND, GOOD, REFERENCES, None, None, GATE)
    payload = json.loads(json.dumps(decision.to_dict()))
    assert payload["promote"] is True
    assert payload["candidate"] == CAND
    assert payload["production"] is None
    assert payload["reasons"] == decision.reasons
    assert isinstance(decision, Decision)


def test_gate_from_settings(make_settings) -> None:
    settings = make_settings(
        min_roc_auc=0.6, min_pr_auc_skill=0.2, recency_margin=0.02, promotion_margin=0.01
    )
    assert Gate.from_settings(settings) == Gate(
        min_roc_auc=0.6, min_pr_auc_skill=0.2, recency_margin=0.02, production_margin=0.01
    )


def test_the_default_gate_passes_the_good_models_and_refuses_random_at_both_base_rates(
    make_settings,
) -> None:
    gate = Gate.from_settings(make_settings())
    assert gate == Gate(
        min_roc_auc=0.60, min_pr_auc_skill=0.15, recency_margin=0.005, production_margin=0.005
    )
    for good, references in ((GOOD, REFERENCES), (HIGH_CHURN, HIGH_CHURN_REFERENCES)):
        assert decide(CAND, good, references, None, None, gate).promote, good
    high_churn_random = at_base_rate(pr_auc=0.52, roc_auc=0.5, base_rate=0.52)
    for random in (SHUFFLED, high_churn_random):
        decision = decide(CAND, random, REFERENCES, None, None, gate)
        assert not decision.promote
        assert [r.split()[0] for r in decision.failed[:2]] == ["ROC-AUC", "PR-AUC"], decision
