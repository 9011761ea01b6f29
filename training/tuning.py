"""A small hyperparameter search per model kind, on forward, user-disjoint folds of the fit rows.

Only the fit part is searched: the calibration and validation rows never choose a
parameter. Users are cut into ``FOLDS`` groups by a hash of their id; a fold tests one
group at the newest third of the fit as-of times and trains on the other groups at the
earlier times. Test rows are later than training rows, as validation is, and belong to
users the fold never trained on, so a label of the same user (the reason the split keeps a
horizon between fit and validation) never teaches its test rows. That needs no embargo, so
a short history can be tuned: the demo's 21 fit days give folds of 14 training and 7 test
days. What users share, the calendar, is not held apart.

Each configuration is scored by its mean average precision (PR-AUC) over the folds,
uncalibrated: Platt scaling is monotone, so it would not change the ranking. The
defaults are always tried first and only a strictly better mean replaces them, so the
search never does worse on the folds than the defaults.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from training.labels import LABEL
from training.models import DEFAULT_PARAMS, REFERENCE_ROWS, ModelKind, build_model

FOLDS = 3
# A fold trains on at least this many as-of times: fewer teach a model too little to
# rank configurations by. The newest third of the times are the test times.
MIN_TRAIN_TIMES = 7
# The search sees at most about this many fit rows, whole users drawn at random, or 100k
# users would make a retrain fit every configuration on a million rows three times. The
# cost: parameters in absolute units (min_samples_leaf, C) are chosen for the sample's size.
# The final fit scales those parameters to its own rows (``models.scale_to_rows``).
MAX_TUNING_ROWS = REFERENCE_ROWS
# Tried in this order, the defaults first; a budget of B tries the first B. Logistic: the
# regularisation strength, both ends of the range first. Boosted: simpler trees first
# (users repeat across as-of days, so a fit part holds fewer independent rows than it
# looks), then bigger ones.
GRIDS: dict[ModelKind, list[dict[str, float]]] = {
    "logistic": [DEFAULT_PARAMS["logistic"]] + [{"C": c} for c in (0.01, 3.0, 0.03, 0.1, 1.0)],
    "boosted": [DEFAULT_PARAMS["boosted"]]
    + [
        {
            "learning_rate": lr,
            "max_leaf_nodes": leaves,
            "min_samples_leaf": leaf,
            "l2_regularization": l2,
        }
        for lr, leaves, leaf, l2 in (
            (0.03, 4, 300, 3.0),
            (0.05, 7, 200, 3.0),
            (0.03, 15, 100, 1.0),
            (0.1, 15, 200, 1.0),
            (0.05, 63, 50, 0.1),
        )
    ],
}


@dataclass(frozen=True)
class Fold:
    """Test: the users of ``group`` at the ``test`` times; train: the other users at the
    ``train`` times, all earlier."""

    group: int
    train: list[pd.Timestamp]
    test: list[pd.Timestamp]

    def describe(self) -> dict[str, object]:
        times = {name: [str(min(part)), str(max(part))]
                 for name, part in (("train", self.train), ("test", self.test))}  # fmt: skip
        return {"test_users": f"group {self.group} of {FOLDS}", **times}


@dataclass(frozen=True)
class Trial:
    """One configuration and its PR-AUC on each fold."""

    params: dict[str, float]
    fold_pr_auc: list[float]

    @property
    def mean_pr_auc(self) -> float:
        return float(np.mean(self.fold_pr_auc))


@dataclass(frozen=True)
class Tuning:
    """What was searched for one model kind and what was chosen (``skipped``: why not)."""

    kind: ModelKind
    budget: int
    folds: list[Fold]
    trials: list[Trial]
    chosen: dict[str, float]
    skipped: str | None = None

    @property
    def chosen_text(self) -> str:
        return params_text(self.chosen)

    def summary(self) -> str:
        """One line for the log: what was chosen, on what evidence."""
        if self.skipped is not None:
            return f"{self.chosen_text} (not tuned: {self.skipped})"
        best = best_trial(self.trials)
        return (
            f"{self.chosen_text}: mean fold PR-AUC {best.mean_pr_auc:.3f} "
            f"(defaults {self.trials[0].mean_pr_auc:.3f}), {len(self.trials)} configurations "
            f"on {len(self.folds)} folds"
        )

    def to_dict(self) -> dict:
        """JSON-ready, for the model's metadata."""
        return {
            "budget": self.budget,
            "grid": candidates(self.kind, self.budget),
            "folds": [fold.describe() for fold in self.folds],
            "trials": [asdict(t) | {"mean_pr_auc": t.mean_pr_auc} for t in self.trials],
            "chosen": self.chosen,
            "skipped": self.skipped,
        }


def params_text(params: dict[str, float]) -> str:
    """``C=0.3`` or ``learning_rate=0.05 max_leaf_nodes=31 …``, for tables and logs."""
    return " ".join(f"{name}={value:g}" for name, value in params.items())


def candidates(kind: ModelKind, budget: int) -> list[dict[str, float]]:
    """The first ``budget`` configurations of the kind's grid (the defaults first)."""
    grid = GRIDS[kind]
    if not 1 <= budget <= len(grid):
        raise ValueError(
            f"CHURN_TUNING_BUDGET must be between 1 and {len(grid)} (the {kind} grid), got {budget}"
        )
    return grid[:budget]


def user_groups(users: pd.Series, groups: int = FOLDS) -> np.ndarray:
    """Each user's group, 0 … ``groups`` - 1, from a CRC-32 of the id: the same on every
    run and machine, and unrelated to anything the user did."""
    return users.astype(str).map(lambda u: zlib.crc32(u.encode()) % groups).to_numpy()


def sample_users(rows: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """``rows`` of a seeded random share of the users, about ``max_rows`` in all; every row
    of a user drawn is kept (a fold splits users, never a user's rows)."""
    if len(rows) <= max_rows:
        return rows
    users = np.sort(rows[ENTITY_KEY].unique())
    keep = max(1, len(users) * max_rows // len(rows))
    drawn = np.random.default_rng(seed).choice(users, keep, replace=False)
    return rows[rows[ENTITY_KEY].isin(drawn)]


def forward_folds(
    times: list[pd.Timestamp], folds: int = FOLDS, min_train_times: int = MIN_TRAIN_TIMES
) -> list[Fold]:
    """One fold per user group: test at the newest third of the as-of times (at least one),
    train at the earlier ones; ``[]`` when fewer than ``min_train_times`` are earlier."""
    ordered = sorted(set(times))
    split = len(ordered) - max(1, len(ordered) // 3)
    if split < min_train_times:
        return []
    return [Fold(group, ordered[:split], ordered[split:]) for group in range(folds)]


def best_trial(trials: list[Trial]) -> Trial:
    """The trial with the highest mean PR-AUC; the earlier one (the defaults first) on a tie."""
    if not trials:
        raise ValueError("no trials to choose from")
    best = trials[0]
    for trial in trials[1:]:
        if trial.mean_pr_auc > best.mean_pr_auc:
            best = trial
    return best


def tune(
    kind: ModelKind,
    fit: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    budget: int,
    seed: int,
) -> Tuning:
    """Search the first ``budget`` configurations of ``kind`` on forward, user-disjoint folds
    of ``fit``.

    ``fit`` holds the fit rows only (features, ``LABEL`` and the as-of time). A fold whose
    training or test rows hold one class cannot rank anything and is left out.
    """
    grid = candidates(kind, budget)
    defaults = grid[0]
    if budget == 1:
        return Tuning(kind, budget, [], [], defaults, "budget 1: the defaults only")
    fit = sample_users(fit, MAX_TUNING_ROWS, seed)
    groups = user_groups(fit[ENTITY_KEY])
    parts = [
        (fold, _fold_rows(fit, groups, fold))
        for fold in forward_folds(list(fit[TIMESTAMP_FIELD].unique()))
    ]
    parts = [(f, rows) for f, rows in parts if all(r[LABEL].nunique() == 2 for r in rows)]
    folds = [fold for fold, _ in parts]
    if not folds:
        times = fit[TIMESTAMP_FIELD].nunique()
        return Tuning(kind, budget, [], [], defaults, (
            f"{times} fit as-of times hold no fold: a fold trains on at least {MIN_TRAIN_TIMES} "
            "as-of times before its test times (the newest third), and both hold churners "
            "and stayers"
        ))  # fmt: skip
    names = numeric + categorical
    trials = []
    for params in grid:
        scores = []
        for _, (train, test) in parts:
            model = build_model(kind, numeric, categorical, seed, params)
            model.fit(train[names], train[LABEL])
            predicted = model.predict_proba(test[names])[:, 1]
            scores.append(float(average_precision_score(test[LABEL], predicted)))
        trials.append(Trial(params, scores))
    return Tuning(kind, budget, folds, trials, best_trial(trials).params)


def _fold_rows(
    fit: pd.DataFrame, groups: np.ndarray, fold: Fold
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of a fold: other users before, the fold's users after."""
    tested = groups == fold.group
    at = fit[TIMESTAMP_FIELD]
    return fit[~tested & at.isin(fold.train)], fit[tested & at.isin(fold.test)]
