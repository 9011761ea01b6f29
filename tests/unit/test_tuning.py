"""The search on forward, user-disjoint folds: the folds, the grid and budget, the choice."""

from __future__ import annotations

import re
import zlib
from datetime import timedelta

import pandas as pd
import pytest
from rich.console import Console

from churn.progress import tuning_table
from core.settings import Settings
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from tests.unit.synthetic import user_frame
from training.labels import LABEL
from training.models import DEFAULT_PARAMS, MODEL_KINDS, build_model, split_columns
from training.train import TrainResult
from training.tuning import (
    GRIDS,
    Fold,
    Trial,
    Tuning,
    best_trial,
    candidates,
    forward_folds,
    sample_users,
    tune,
    user_groups,
)

DAY0 = pd.Timestamp("2026-03-01", tz="UTC")


def days(*offsets: int) -> list[pd.Timestamp]:
    return [DAY0 + timedelta(days=d) for d in offsets]


@pytest.mark.parametrize(
    ("case", "times", "train", "test"),
    [
        (
            "the demo's 21 fit times: 14 before, 7 tested",
            days(*range(21)),
            range(14),
            range(14, 21),
        ),
        ("10 times: the newest 3 tested", days(*range(10)), range(7), range(7, 10)),
        (
            "every other day: times, not days, are counted",
            days(*range(0, 30, 2)),
            range(0, 20, 2),
            range(20, 30, 2),
        ),
        ("unsorted and repeated times", days(*reversed(range(10)), 5, 9), range(7), range(7, 10)),
        ("9 times leave 6 before the newest third: too few", days(*range(9)), None, None),
        ("one time", days(0), None, None),
    ],
)
def test_forward_folds(case: str, times: list[pd.Timestamp], train, test) -> None:
    found = forward_folds(times, folds=3, min_train_times=7)
    if train is None:
        assert found == [], case
        return
    assert found == [Fold(g, days(*train), days(*test)) for g in range(3)], case
    for fold in found:  # forward: every training time precedes every test time
        assert max(fold.train) < min(fold.test)


def test_user_groups_are_stable_and_balanced() -> None:
    users = pd.Series([f"u{i:06d}" for i in range(3000)])
    groups = user_groups(users)
    assert groups.tolist() == user_groups(users.iloc[::-1]).tolist()[::-1]  # per id, not order
    assert set(groups) == {0, 1, 2}
    assert all(900 < (groups == g).sum() < 1100 for g in range(3))
    assert user_groups(pd.Series(["u000001"])).tolist() == [zlib.crc32(b"u000001") % 3]


def test_sample_users_keeps_whole_users_up_to_about_max_rows(fit_rows) -> None:
    assert sample_users(fit_rows, len(fit_rows), seed=1) is fit_rows  # small enough: untouched
    sample = sample_users(fit_rows, 1800, seed=1)  # 45 times × 120 users: 40 users, 1,800 rows
    assert sample[ENTITY_KEY].nunique() == 40
    assert len(sample) == 1800
    assert (sample.groupby(ENTITY_KEY).size() == 45).all()  # every row of a user drawn
    assert sample.equals(sample_users(fit_rows, 1800, seed=1))  # seeded
    assert not sample.equals(sample_users(fit_rows, 1800, seed=2))


def test_fold_describe() -> None:
    fold = Fold(2, days(0, 1), days(40))
    assert fold.describe() == {
        "test_users": "group 2 of 3",
        "train": ["2026-03-01 00:00:00+00:00", "2026-03-02 00:00:00+00:00"],
        "test": ["2026-04-10 00:00:00+00:00", "2026-04-10 00:00:00+00:00"],
    }


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_the_grid_starts_with_the_defaults_and_every_entry_builds(kind) -> None:
    assert GRIDS[kind][0] == DEFAULT_PARAMS[kind]
    assert len({tuple(sorted(p.items())) for p in GRIDS[kind]}) == len(GRIDS[kind])
    for params in GRIDS[kind]:
        build_model(kind, ["logins_7d"], ["plan"], seed=1, params=params)
    # The setting's bound is the grid's size: a budget the grid cannot fill is refused early.
    assert Settings.model_fields["tuning_budget"].metadata[-1].le == len(GRIDS[kind])


@pytest.mark.parametrize(
    ("kind", "budget", "tried"),
    [
        ("logistic", 1, [{"C": 0.3}]),
        ("logistic", 3, [{"C": 0.3}, {"C": 0.01}, {"C": 3.0}]),
        ("boosted", 2, GRIDS["boosted"][:2]),
        ("boosted", 6, GRIDS["boosted"]),
    ],
)
def test_candidates_are_the_first_budget_entries(kind, budget, tried) -> None:
    assert candidates(kind, budget) == tried


@pytest.mark.parametrize("budget", [0, 7])
def test_a_budget_outside_the_grid_is_an_error(budget: int) -> None:
    with pytest.raises(ValueError, match="CHURN_TUNING_BUDGET must be between 1 and 6"):
        candidates("logistic", budget)


def test_build_model_takes_the_chosen_parameters_and_refuses_unknown_ones() -> None:
    logistic = build_model("logistic", ["logins_7d"], [], seed=1, params={"C": 0.03})
    assert logistic[-1].C == 0.03
    booster = build_model("boosted", ["logins_7d"], [], seed=1)
    assert (booster[-1].learning_rate, booster[-1].max_leaf_nodes) == (0.05, 31)
    assert (booster[-1].min_samples_leaf, booster[-1].l2_regularization) == (100, 1.0)
    with pytest.raises(ValueError, match=r"unknown logistic parameters \['c'\]"):
        build_model("logistic", ["logins_7d"], [], seed=1, params={"c": 0.03})


@pytest.mark.parametrize(
    ("case", "means", "chosen"),
    [
        ("the defaults win", [0.30, 0.29, 0.28], 0),
        ("a better one wins", [0.30, 0.32, 0.31], 1),
        ("a tie keeps the earlier (the defaults)", [0.30, 0.30, 0.29], 0),
        ("a tie between later ones keeps the earlier", [0.30, 0.31, 0.31], 1),
    ],
)
def test_best_trial(case: str, means: list[float], chosen: int) -> None:
    trials = [Trial({"C": float(i)}, [m - 0.01, m + 0.01]) for i, m in enumerate(means)]
    assert best_trial(trials) is trials[chosen], case


def test_best_trial_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trials"):
        best_trial([])


def timed_users(times: int, per_time: int = 120) -> pd.DataFrame:
    """The same synthetic users asked on ``times`` consecutive days, as fit rows look."""
    frames = []
    for i in range(times):
        frame = user_frame(per_time, seed=100 + i)
        frame[ENTITY_KEY] = [f"u{j:06d}" for j in range(per_time)]
        frame[TIMESTAMP_FIELD] = DAY0 + timedelta(days=i)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fit_rows() -> pd.DataFrame:
    return timed_users(45)


def test_tune_tries_the_budget_on_the_folds_and_keeps_the_best(fit_rows) -> None:
    features = [c for c in fit_rows if c not in (ENTITY_KEY, LABEL, TIMESTAMP_FIELD)]
    numeric, categorical = split_columns(fit_rows, features)
    tuning = tune("logistic", fit_rows, numeric, categorical, budget=4, seed=1)
    assert tuning.skipped is None
    assert [t.params for t in tuning.trials] == candidates("logistic", 4)
    assert tuning.folds == forward_folds(list(fit_rows[TIMESTAMP_FIELD].unique()))
    assert all(len(t.fold_pr_auc) == 3 for t in tuning.trials)
    assert tuning.chosen == best_trial(tuning.trials).params
    assert max(t.mean_pr_auc for t in tuning.trials) >= tuning.trials[0].mean_pr_auc
    again = tune("logistic", fit_rows, numeric, categorical, budget=4, seed=1)
    assert again == tuning  # deterministic
    record = tuning.to_dict()
    assert record["grid"] == candidates("logistic", 4)
    assert record["chosen"] == tuning.chosen
    assert [t["mean_pr_auc"] for t in record["trials"]] == [t.mean_pr_auc for t in tuning.trials]
    assert len(record["folds"]) == 3


@pytest.mark.parametrize(
    ("case", "times", "budget", "skipped"),
    [
        ("budget 1", 45, 1, "budget 1: the defaults only"),
        (
            "too short a fit part",
            9,
            4,
            "9 fit as-of times hold no fold: a fold trains on at least 7 as-of times before its "
            "test times (the newest third), and both hold churners and stayers",
        ),
    ],
)
def test_tune_falls_back_to_the_defaults(case: str, times: int, budget: int, skipped: str) -> None:
    rows = timed_users(times, per_time=40)
    tuning = tune("logistic", rows, ["logins_7d"], ["plan"], budget=budget, seed=1)
    assert tuning.skipped == skipped, case
    assert tuning.chosen == DEFAULT_PARAMS["logistic"]
    assert tuning.trials == [] and tuning.folds == []
    assert "(not tuned: " in tuning.summary()


def test_folds_with_one_class_are_left_out(fit_rows) -> None:
    rows = fit_rows.copy()
    first_fold = forward_folds(list(rows[TIMESTAMP_FIELD].unique()))[0]
    tested = (user_groups(rows[ENTITY_KEY]) == first_fold.group) & rows[TIMESTAMP_FIELD].isin(
        first_fold.test
    )
    rows.loc[tested, LABEL] = 0  # no churner to rank among the first group's test rows
    tuning = tune("logistic", rows, ["logins_7d"], ["plan"], budget=2, seed=1)
    assert first_fold not in tuning.folds
    assert len(tuning.folds) == 2


def test_the_console_table_shows_what_was_chosen() -> None:
    folds = [Fold(0, days(0), days(31)), Fold(1, days(0), days(31))]
    tuned = Tuning("logistic", 2, folds, [Trial({"C": 0.3}, [0.2, 0.3]),
                                          Trial({"C": 0.03}, [0.3, 0.4])], {"C": 0.03})  # fmt: skip
    skipped = Tuning(
        "boosted", 4, [], [], DEFAULT_PARAMS["boosted"], "21 fit as-of times hold no fold"
    )
    result = TrainResult({}, {}, {}, None, {}, {}, 0, {"logistic": tuned, "boosted": skipped})
    console = Console(record=True, width=200)
    console.print(tuning_table(result))
    text = console.export_text()
    cells = r"logistic\s*│\s*2\s*│\s*2\s*│\s*0\.250\s*│\s*0\.350\s*│\s*C=0\.03\s"
    assert re.search(cells, text), text
    assert (
        "learning_rate=0.05 max_leaf_nodes=31 min_samples_leaf=100 l2_regularization=1 (defaults)"
        in text
    )
    assert "not tuned: 21 fit as-of times hold no fold" in text
