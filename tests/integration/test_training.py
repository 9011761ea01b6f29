"""Training end to end on real Feast + Redis: labels, the point-in-time join, the split,
two registered models, determinism, no leakage, and the promotion gate."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from core import partitions
from core.contract import EVENT_COLUMNS, USER_COLUMNS, to_contract_table
from core.settings import Settings
from feature_repo.feast_cli import apply_definitions
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_store
from ingestion import raw_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation
from served import registry
from served.card import load_card
from served.population import RECENCY
from tests.conftest import PRODUCT_TUNING_BUDGET
from training.dataset import feature_refs, training_set
from training.labels import LABEL, build_labels
from training.models import MODEL_KINDS
from training.promote import decisions, force, promote
from training.train import VALIDATION_ROWS, train_models
from training.tuning import FOLDS, GRIDS

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
DAYS = 120
NOW = datetime(2026, 5, 2, tzinfo=UTC)


def _prepare(settings: Settings) -> None:
    assert run_validation(settings).passed
    build_user_daily(settings, now=NOW)
    build_rolling_features(settings)


@pytest.fixture(scope="module")
def built(tmp_path_factory, isolated_settings):
    tmp = tmp_path_factory.mktemp("training")
    settings = isolated_settings(tmp, tuning_budget=PRODUCT_TUNING_BUDGET)  # the tuning tests
    write_demo_data(generate_demo_data(n_users=600, days=DAYS, seed=4, start=START), settings)
    _prepare(settings)
    apply_definitions(settings)
    yield tmp, settings
    open_store(settings).teardown()


@pytest.fixture(scope="module")
def trained(built):
    _, settings = built
    return settings, train_models(settings, now=NOW)


def test_two_versions_are_registered_with_their_metadata(trained):
    settings, result = trained
    assert set(result.versions) == {"logistic", "boosted"}
    index = registry.list_versions(settings.models_dir)
    assert [line["version"] for line in index] == list(result.versions.values())
    for kind, version in result.versions.items():
        folder = settings.models_dir / version
        for name in ("model.joblib", "metadata.json", "pr_curve.png", "roc_curve.png",
                     "reliability.png", "feature_importance.png", VALIDATION_ROWS):  # fmt: skip
            assert (folder / name).is_file(), name
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["model_kind"] == kind
        assert meta["feature_refs"] == feature_refs(open_store(settings))  # ordered as served
        assert set(meta["reference_bins"]) == {r.split(":")[1] for r in meta["feature_refs"]}
        assert meta["metrics"]["rows"] == meta["rows"]["validation"] > 0
        assert 0 < meta["positive_rate"]["validation"] < 0.5
        assert {"recency", "base_rate", "oracle"} <= set(meta["references"])
        assert meta["metrics"]["oracle_roc_auc_ratio"] > 0
        assert meta["metrics"]["pr_auc_skill"] > 0
        # 600 users fit in the default budget: every one fitted, and the metadata says so.
        sample = meta["sample"]
        assert sample["users"] == sample["users_total"] == result.sample.users_total > 0
        assert sample["rows"] == sample["rows_total"]
        fitted = meta["rows"]["fit"] + meta["rows"]["calibration"]
        assert fitted <= sample["rows"] <= fitted + meta["rows"]["missing_features"]
        # What serving reads of it: the card parses, and says what the metadata says.
        card = load_card(settings.models_dir, version)
        assert (card.version, card.model_kind, card.created_at) == (version, kind, NOW)
        assert list(card.feature_refs) == meta["feature_refs"]
        assert (card.horizon_days, card.active_lookback_days) == (
            settings.horizon_days,
            settings.active_lookback_days,
        )
        assert card.reference_bins == meta["reference_bins"] and card.score_reference_bins


def test_embargo_separates_training_from_validation(trained):
    settings, result = trained
    split = result.split
    first_validation = min(split.validation)
    assert (
        max(split.fit + split.calibration) + timedelta(days=settings.horizon_days)
        <= first_validation
    )
    assert max(split.fit) < min(split.calibration)
    assert len(split.validation) == settings.validation_days


def test_training_is_deterministic(built, trained):
    tmp, settings = built
    _, first = trained
    again = train_models(settings.model_copy(update={"artifacts_dir": tmp / "again"}), now=NOW)
    assert again.metrics == first.metrics
    meta = [registry.load_metadata(s, v) for s, v in (
        (settings.models_dir, first.versions["logistic"]),
        (tmp / "again" / "models", again.versions["logistic"]),
    )]  # fmt: skip
    assert meta[0]["fingerprint"] == meta[1]["fingerprint"]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_more_days_without_activity_never_lower_the_risk(trained, kind):
    """Behavioural test of each candidate, calibrated as it would be served: all else equal,
    a user quiet for longer is never less at risk (on every validation row)."""
    settings, result = trained
    version = result.versions[kind]
    model, _ = registry.load_model(settings.models_dir, version)
    rows = pd.read_parquet(settings.models_dir / version / VALIDATION_ROWS)
    risk = model.predict_proba(rows)[:, 1]
    assert len(rows) > 1000 and rows[RECENCY].notna().any()
    for days in (1, 7, 30):
        quieter = model.predict_proba(rows.assign(**{RECENCY: rows[RECENCY] + days}))[:, 1]
        assert (quieter >= risk - 1e-12).all(), (kind, days, (quieter - risk).min())
    assert (
        model.predict_proba(rows.assign(**{RECENCY: rows[RECENCY] + 30}))[:, 1].mean() > risk.mean()
    )


def test_tuning_searches_forward_folds_of_the_fit_rows_only(trained):
    """120 days leave 21 fit days: each fold trains on 14 and tests on the newest 7."""
    settings, result = trained
    fit_end = max(result.split.fit)
    for kind, version in result.versions.items():
        tuning = registry.load_metadata(settings.models_dir, version)["tuning"]
        assert tuning["skipped"] is None
        budget = settings.tuning_budget
        assert [t["params"] for t in tuning["trials"]] == tuning["grid"] == GRIDS[kind][:budget]
        assert [fold["test_users"] for fold in tuning["folds"]] == [
            f"group {g} of {FOLDS}" for g in range(FOLDS)
        ]
        for fold in tuning["folds"]:
            train_start, train_end = (pd.Timestamp(t) for t in fold["train"])
            test_start, test_end = (pd.Timestamp(t) for t in fold["test"])
            assert train_start == min(result.split.fit)
            assert train_end + timedelta(days=1) == test_start  # forward, no gap needed
            assert test_end == fit_end  # never a calibration or a validation row
        best = max(tuning["trials"], key=lambda t: t["mean_pr_auc"])
        assert tuning["chosen"] == best["params"]
        assert best["mean_pr_auc"] >= tuning["trials"][0]["mean_pr_auc"]  # defaults first
        assert result.tuning[kind].chosen == tuning["chosen"]


def test_a_sampled_fit_is_validated_on_the_same_rows_as_the_full_one(built, trained):
    """CHURN_TRAIN_MAX_USERS: the fit sees whole users of a sample, validation every user."""
    tmp, settings = built
    _, full = trained
    capped = settings.model_copy(
        update={"artifacts_dir": tmp / "sampled", "train_max_users": 150, "tuning_budget": 1}
    )
    sampled = train_models(capped, now=NOW)
    assert len(sampled.sample.users) == 150 < sampled.sample.users_total
    assert sampled.sample.rows < sampled.sample.rows_total == full.sample.rows_total
    assert sampled.rows["fit"] < full.rows["fit"]
    assert sampled.rows["validation"] == full.rows["validation"]
    for name in ("recency", "oracle"):  # the same rows: the same figures (the base rate
        assert sampled.references[name] == full.references[name]  # is the fit's, not these)
    keys = [ENTITY_KEY, TIMESTAMP_FIELD, LABEL]
    rows = [
        pd.read_parquet(s.models_dir / r.versions["boosted"] / VALIDATION_ROWS, columns=keys)
        for s, r in ((settings, full), (capped, sampled))
    ]
    pd.testing.assert_frame_equal(rows[0], rows[1])
    meta = registry.load_metadata(capped.models_dir, sampled.versions["boosted"])
    assert meta["sample"]["users"] == 150
    assert meta["sample"]["cap_from"] == "CHURN_TRAIN_MAX_USERS"


def test_labels_without_the_label_column_are_refused(built):
    _, settings = built
    labels = build_labels(settings).drop(columns=[LABEL])
    with pytest.raises(ValueError, match=r"labels lack the columns \['churned'\]"):
        train_models(settings, now=NOW, labels=labels)


def test_joined_values_are_the_newest_offline_row_at_or_before_t(built):
    _, settings = built
    labels = build_labels(settings)
    sample = labels.sample(300, random_state=3)
    joined = training_set(settings, sample).frame
    glob = partitions.table_glob(settings.features_path)
    import duckdb

    offline = duckdb.execute(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").df()
    for row in joined.sample(60, random_state=0).itertuples(index=False):
        rows = offline[
            (offline.user_id == row.user_id) & (offline.event_timestamp <= row.event_timestamp)
        ]
        newest = rows.sort_values("event_timestamp").iloc[-1]
        assert newest.event_timestamp == row.event_timestamp  # a daily row exists at every T
        assert (row.logins_7d, row.days_since_last_activity) == (
            newest.logins_7d,
            newest.days_since_last_activity,
        )


def test_rows_without_features_are_reported_not_filled(built):
    _, settings = built
    labels = build_labels(settings).head(20)
    ghost = pd.DataFrame(
        {ENTITY_KEY: ["nobody"], TIMESTAMP_FIELD: [labels[TIMESTAMP_FIELD].iloc[0]], LABEL: [1]}
    )
    result = training_set(settings, pd.concat([labels, ghost], ignore_index=True))
    assert result.missing[ENTITY_KEY].tolist() == ["nobody"]
    assert len(result.frame) == 20


def test_future_events_change_no_settled_training_row(tmp_path, isolated_settings):
    """Append events after a cutoff C: rows with T + horizon ≤ C keep features and labels."""
    settings = isolated_settings(tmp_path)
    data = generate_demo_data(n_users=300, days=DAYS, seed=8, start=START)
    write_demo_data(data, settings)
    _prepare(settings)
    apply_definitions(settings)
    try:
        before = training_set(settings, build_labels(settings)).frame
        cutoff = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=75)
        late = data.events[data.events.event_time >= cutoff - pd.Timedelta(days=30)].copy()
        late["event_time"] = late["event_time"] + pd.Timedelta(days=30)  # all after the cutoff
        late = late[late.event_time < pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=DAYS)]
        late["event_id"] = "late-" + late["event_id"].astype(str)
        events = pd.concat([data.events, late], ignore_index=True)
        raw_store.replace_all(
            settings,
            to_contract_table(data.users, USER_COLUMNS),
            [to_contract_table(events, EVENT_COLUMNS)],
        )
        _prepare(settings)
        after = training_set(settings, build_labels(settings)).frame
        horizon = pd.Timedelta(days=settings.horizon_days)
        settled = before[before[TIMESTAMP_FIELD] + horizon <= cutoff].reset_index(drop=True)
        assert len(settled) > 1000
        pd.testing.assert_frame_equal(
            after[after[TIMESTAMP_FIELD] + horizon <= cutoff].reset_index(drop=True), settled
        )
        # Features at T ≤ C are untouched too; only labels whose horizon crosses C may move.
        keys = [ENTITY_KEY, TIMESTAMP_FIELD]
        names = [c for c in before.columns if c not in (*keys, LABEL)]
        near = before[before[TIMESTAMP_FIELD] <= cutoff].set_index(keys)[names]
        pd.testing.assert_frame_equal(after.set_index(keys).loc[near.index, names], near)
        # The control: the late events did reach the rows after the cutoff.
        later = [
            frame[frame[TIMESTAMP_FIELD] > cutoff].logins_30d.sum() for frame in (before, after)
        ]
        assert later[1] > later[0] > 0
    finally:
        open_store(settings).teardown()


def test_promotion_gate_end_to_end(trained):
    settings, result = trained
    best = result.versions[result.best]
    other = next(v for k, v in result.versions.items() if k != result.best)
    # On a portal of 600 users, neither model ranks better than the days since the last
    # activity: the gate refuses the best one, with the reference's numbers.
    first = promote(settings, best, now=NOW)
    assert not first.decision.promote
    assert any(r.startswith("does not beat the recency reference: PR-AUC")
               for r in first.decision.failed), first.decision.reasons  # fmt: skip
    assert first.references == registry.load_metadata(settings.models_dir, best)["references"]
    assert registry.production(settings.models_dir) is None
    # An operator serves it anyway; the weaker model is scored against it on the same
    # validation rows, and refused.
    force(settings, best, "test", now=NOW)
    worse = promote(settings, other, now=NOW)
    assert not worse.decision.promote
    assert any(r.startswith("fail: does not beat production") for r in worse.decision.reasons)
    assert worse.production_metrics["rows"] == worse.candidate_metrics["rows"]
    assert registry.production(settings.models_dir) == best
    # An operator restores the other one by force, then rolls back.
    force(settings, other, "test", now=NOW)
    assert registry.production(settings.models_dir) == other
    assert registry.rollback(settings.models_dir) == best
    # Asking again for the model that is production is refused, not an error.
    again = promote(settings, best, now=NOW)
    assert not again.decision.promote
    assert f"fail: candidate {best} already is production" in again.decision.reasons
    recorded = decisions(settings.models_dir)
    assert len(recorded) == 3
    assert all(d["references"]["recency"]["rows"] == d["candidate_metrics"]["rows"]
               for d in recorded)  # fmt: skip


def test_promote_cli_prints_reasons_and_exits_non_zero_when_refused(trained, tmp_path):
    from typer.testing import CliRunner

    from churn.cli import app

    settings, _ = trained
    copy = settings.model_copy(update={"artifacts_dir": tmp_path / "artifacts"})
    shutil.copytree(settings.models_dir, copy.models_dir)
    env = copy.as_env() | {"CHURN_MIN_ROC_AUC": "0.99"}  # a floor no model reaches
    refused = CliRunner().invoke(app, ["promote"], env=env)
    assert refused.exit_code == 3, refused.output
    assert "fail: ROC-AUC" in refused.output
    assert "refused" in refused.output
