"""The nightly estimate: exact expectations on tiny inputs, each draw scored as sklearn scores
realized labels, the band against the expectation, the night's report and history, the join
with the realized outcomes, the gauges, and the retraining trigger it may feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from batch.outputs import PREDICTION_COLUMNS, PREDICTIONS_FILE, batch_dir
from core.atomic import write_parquet
from core.history import append_record, read_records
from monitor.cbpe import Ranking, expected_metrics
from monitor.estimate import (
    EXIT_CODES,
    estimate_history,
    estimate_report,
    estimate_samples,
    nights_under_floor,
    versus_realized,
    write_estimate_report,
)
from monitor.retrain import Evidence, gather_evidence, triggers
from served import registry
from served.arms import ASSIGNMENT_COLUMNS, write_assignments
from training.evaluation import evaluate, pr_auc_skill

NIGHT = date(2026, 11, 26)
VERSION = "20261101T040000Z-aaaaaaaa"


def test_churn_rate_and_precision_at_k_are_means_of_p_exactly():
    p = np.array([0.9, 0.1, 0.5, 0.5, 0.3, 0.7])
    e = expected_metrics(p, k=3, draws=50, seed=1)
    assert e.churn_rate == pytest.approx(3.0 / 6)
    assert e.precision_at_k == pytest.approx((0.9 + 0.7 + 0.5) / 3)  # tie at 0.5: same p
    assert (e.rows, e.k) == (6, 3)
    assert expected_metrics(p, k=50, draws=50, seed=1).k == 6  # K above the rows: all of them


def test_each_draw_is_scored_as_sklearn_scores_realized_labels():
    rng = np.random.default_rng(5)
    ranking = Ranking(np.round(rng.beta(1, 4, 400), 2))  # many ties
    labels = rng.random((6, 400)) < ranking.scores
    pr_auc, roc_auc, positives = ranking.score(labels)
    for i, y in enumerate(labels):
        assert pr_auc[i] == pytest.approx(average_precision_score(y, ranking.scores), abs=1e-12)
        assert roc_auc[i] == pytest.approx(roc_auc_score(y, ranking.scores), abs=1e-12)
        assert positives[i] == y.sum()


def test_with_certain_probabilities_the_estimate_is_the_realized_figure():
    p = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    e = expected_metrics(p, k=2, draws=30, seed=3)
    realized = evaluate(p.astype(int), p, k=2)
    for name in ("pr_auc", "pr_auc_skill", "roc_auc"):
        band = getattr(e, name)
        assert band.mean == band.lower == band.upper == pytest.approx(realized[name])
    assert (e.churn_rate, e.precision_at_k) == (realized["base_rate"], realized["precision_at_k"])


def test_the_band_holds_the_expected_roc_auc():
    """The expected share of (churner, stayer) pairs ranked right, by brute force over the pairs
    (ratio of expectations: within a fraction of the band of the draws' mean at 300 users)."""
    p = np.random.default_rng(11).beta(1.5, 4, 300)
    e = expected_metrics(p, k=10, draws=400, seed=2)
    churner, stayer = p[:, None], 1 - p[None, :]
    weight = churner * stayer
    np.fill_diagonal(weight, 0)
    above = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    expected = (weight * above).sum() / weight.sum()
    assert e.roc_auc.lower < expected < e.roc_auc.upper
    assert e.roc_auc.upper - e.roc_auc.lower < 0.2
    assert e.pr_auc_skill.lower < pr_auc_skill(e.pr_auc.mean, e.churn_rate) < e.pr_auc_skill.upper


def test_the_same_seed_gives_the_same_estimate_and_single_class_draws_are_left_out():
    p = np.array([0.02, 0.01, 0.6, 0.03])
    first, again = (expected_metrics(p, k=1, draws=200, seed=9) for _ in range(2))
    assert first == again
    assert 0 < first.draws < 200  # some draws have no churner: both AUCs undefined there
    with pytest.raises(ValueError, match="single class"):
        expected_metrics(np.zeros(5), k=1, draws=20, seed=1)


def _line(day: str, skill: float, **expected: float) -> dict:
    band = lambda v: {"mean": v, "lower": v - 0.05, "upper": v + 0.05}  # noqa: E731
    figures = {"pr_auc": 0.4, "roc_auc": 0.8, "precision_at_k": 0.6} | expected
    drawn = {n: band(v) for n, v in figures.items() if n != "precision_at_k"}
    return {
        "as_of": day,
        "expected": drawn | {"precision_at_k": figures["precision_at_k"],
                             "pr_auc_skill": band(skill)},
    }  # fmt: skip


def test_nights_under_the_floor_are_counted_back_from_the_newest():
    lines = [_line("2026-11-20", 0.05), _line("2026-11-21", 0.2), _line("2026-11-22", 0.09),
             _line("2026-11-24", 0.01)]  # fmt: skip
    assert nights_under_floor(lines, 0.10) == 2  # a night without a batch does not break it
    assert nights_under_floor(lines, 0.01) == 0  # at the floor: not under
    assert nights_under_floor([], 0.10) == 0


def test_the_estimate_is_set_beside_the_realized_figures_of_the_same_night():
    estimates = [_line("2026-10-01", 0.3, pr_auc=0.42, roc_auc=0.81, precision_at_k=0.7),
                 _line("2026-10-02", 0.25), _line("2026-10-03", 0.2)]  # fmt: skip
    outcomes = {
        "2026-10-01": {"pr_auc": 0.40, "pr_auc_skill": 0.28, "roc_auc": 0.80,
                       "precision_at_k": 0.5},
        "2026-10-03": {"pr_auc": 0.45, "pr_auc_skill": 0.31, "precision_at_k": 0.62},
        "2026-09-30": {"pr_auc": 0.1},  # no estimate of that night
    }  # fmt: skip
    checked = versus_realized(estimates, outcomes)
    assert [c.as_of for c in checked] == ["2026-10-01", "2026-10-03"]
    first, last = checked
    assert first.estimated == {"precision_at_k": 0.7, "pr_auc": 0.42, "pr_auc_skill": 0.3,
                               "roc_auc": 0.81}  # fmt: skip
    assert first.difference("pr_auc") == pytest.approx(0.02)
    assert first.difference("precision_at_k") == pytest.approx(0.2)
    assert last.difference("pr_auc_skill") == pytest.approx(0.2 - 0.31)
    assert last.difference("roc_auc") is None  # outcomes without ROC-AUC


def _batch(settings, day: date, risks: list[float], top_k: int) -> pd.DataFrame:
    """A batch written in the batch job's layout: riskiest first, its list's arms."""
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(len(risks))], "churn_risk": risks})
    frame = frame.sort_values("churn_risk", ascending=False).reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["risk_band"] = np.where(frame["churn_risk"] >= 0.35, "high", "low")
    frame["model_version"] = VERSION
    frame["features_as_of"] = pd.Timestamp(day, tz=UTC)
    frame["arm"] = np.where(frame["rank"] <= top_k, "contact", "unlisted")
    write_parquet(
        frame[PREDICTION_COLUMNS], batch_dir(settings.predictions_dir, day) / PREDICTIONS_FILE
    )
    return frame


def test_the_report_leaves_the_contacted_arm_out_and_values_the_list(make_settings):
    settings = make_settings(top_k=2, estimate_draws=50)
    risks = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.05]
    frame = _batch(settings, NIGHT, risks, top_k=2)
    listed = frame.loc[frame["churn_risk"] >= 0.35].assign(
        arm=["contact", "holdout", "contact"], monthly_revenue=0.0
    )
    write_assignments(settings, NIGHT, listed[ASSIGNMENT_COLUMNS])
    report = estimate_report(settings)
    assert (report.as_of, report.model_version) == (NIGHT, VERSION)
    assert report.list_size == 3  # top 2 and the high band (0.4)
    assert report.list_precision == pytest.approx((0.9 + 0.5 + 0.4) / 3)
    assert report.contacted_left_out == 2  # 0.9 and 0.4: what outcomes will leave out too
    judged = [0.5, 0.3, 0.2, 0.1, 0.1, 0.05]
    assert report.expected.rows == 6
    assert report.expected.churn_rate == pytest.approx(np.mean(judged))
    assert report.expected.precision_at_k == pytest.approx((0.5 + 0.3) / 2)


def test_a_run_of_low_nights_turns_the_status_to_alert(make_settings):
    settings = make_settings(top_k=2, estimate_draws=40, estimate_alert_nights=3,
                             realized_pr_auc_skill_floor=0.99)  # every estimate is under it  # fmt: skip
    statuses = []
    for offset in range(3):
        day = NIGHT + timedelta(days=offset)
        _batch(settings, day, [0.8, 0.6, 0.3, 0.2, 0.1], top_k=0)
        report = estimate_report(settings)
        write_estimate_report(report, settings)
        statuses.append((report.nights_under_floor, report.status, EXIT_CODES[report.status]))
    assert statuses == [(1, "low", 10), (2, "low", 10), (3, "alert", 20)]
    again = estimate_report(settings, NIGHT + timedelta(days=1))  # a re-run counts back from it
    assert (again.nights_under_floor, again.status) == (2, "low")
    assert len(read_records(settings.estimate_history_path)) == 3
    assert [line["as_of"] for line in estimate_history(settings)] == [
        "2026-11-26", "2026-11-27", "2026-11-28",
    ]  # fmt: skip
    assert (settings.estimate_dir / "as_of=2026-11-28.png").stat().st_size > 0
    ok = estimate_report(make_settings(top_k=2, estimate_draws=40,
                                       realized_pr_auc_skill_floor=0.0))  # fmt: skip
    assert (ok.nights_under_floor, ok.status) == (0, "ok")


def test_the_gauges_carry_the_band_and_the_newest_night_beside_its_realized(make_settings):
    settings = make_settings(top_k=2, estimate_draws=40)
    _batch(settings, NIGHT, [0.8, 0.6, 0.3, 0.2, 0.1], top_k=0)
    report = estimate_report(settings)
    checked = versus_realized(
        [_line("2026-10-01", 0.3), _line("2026-10-02", 0.2)],
        {"2026-10-01": {"pr_auc": 0.1}, "2026-10-02": {"pr_auc": 0.35, "pr_auc_skill": 0.15}},
    )
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for s in estimate_samples(report, checked)}  # fmt: skip
    version = (("model_version", VERSION),)
    assert samples[("churn_estimate_pr_auc_skill", version)] == report.expected.pr_auc_skill.mean
    assert samples[("churn_estimate_roc_auc_lower", version)] == report.expected.roc_auc.lower
    assert samples[("churn_estimate_skill_low", version)] == 0.0
    assert samples[("churn_estimate_checked_pr_auc", (("source", "estimated"),))] == 0.4
    assert samples[("churn_estimate_checked_pr_auc", (("source", "realized"),))] == 0.35
    assert ("churn_estimate_checked_roc_auc", (("source", "realized"),)) not in samples
    night = datetime(2026, 10, 2, tzinfo=UTC).timestamp()
    assert samples[("churn_estimate_checked_as_of_timestamp_seconds", ())] == night
    bare = {s.name for s in estimate_samples(report, [])}
    assert not any(name.startswith("churn_estimate_checked_") for name in bare)


# The retraining trigger: off by default; on, estimated skill under the floor for N nights.
def test_the_estimate_triggers_a_retrain_only_when_asked_and_after_n_nights(make_settings):
    evidence = Evidence(estimated_skill=0.04, estimated_as_of="2026-11-26",
                        estimate_nights_under_floor=3)  # fmt: skip
    assert triggers(evidence, make_settings()) == []  # CHURN_RETRAIN_ON_ESTIMATE is off
    on = make_settings(retrain_on_estimate=True, estimate_alert_nights=3)
    assert triggers(evidence, on) == [
        "estimated PR-AUC skill 0.04 < 0.10 for 3 nights in a row, up to the batch of 2026-11-26"
    ]
    fewer = Evidence(estimated_skill=0.04, estimated_as_of="2026-11-26",
                     estimate_nights_under_floor=2)  # fmt: skip
    assert triggers(fewer, on) == []


def test_the_loop_reads_the_estimate_history_up_to_the_newest_batch(make_settings, caplog):
    settings = make_settings(retrain_on_estimate=True, estimate_alert_nights=2)
    now = datetime(2026, 11, 27, 4, tzinfo=UTC)
    registry.save_model(settings.models_dir, VERSION, {"stub": "model"},
                        {"created_at": (now - timedelta(days=3)).isoformat(),
                         "model_kind": "logistic", "feature_service": "churn_model_v1",
                         "feature_refs": []})  # fmt: skip
    batch_dir(settings.predictions_dir, NIGHT).mkdir(parents=True)
    path = settings.estimate_history_path
    append_record(path, _line("2026-11-24", 0.30))
    append_record(path, _line("2026-11-25", 0.30))
    evidence = gather_evidence(settings, VERSION, now)
    assert (evidence.estimated_skill, evidence.estimate_nights_under_floor) == (None, None)
    assert evidence.notes[-1] == (
        "no estimate record for the newest batch, 2026-11-26 (newest record: 2026-11-25): "
        "run `churn monitor estimate`"
    )
    append_record(path, _line("2026-11-26", 0.05))
    evidence = gather_evidence(settings, VERSION, now)
    assert (evidence.estimated_skill, evidence.estimated_as_of) == (0.05, "2026-11-26")
    assert evidence.estimate_nights_under_floor == 1 and triggers(evidence, settings) == []
    append_record(path, _line("2026-11-25", 0.06))  # a re-run of the 25th: its newest line counts
    evidence = gather_evidence(settings, VERSION, now)
    assert evidence.estimate_nights_under_floor == 2
    assert triggers(evidence, settings) == [
        "estimated PR-AUC skill 0.05 < 0.10 for 2 nights in a row, up to the batch of 2026-11-26"
    ]
    off = gather_evidence(make_settings(), VERSION, now)  # the same files, the setting off
    assert off.estimated_skill is None and not any("estimate" in n for n in off.notes)
