"""A small hyperparameter search per model kind, on time-ordered folds of the fit rows.

Only the fit part is searched: the calibration and validation rows never choose a
parameter. Folds follow time with an expanding window, and each fold's training as-of
times end at least one horizon before its test times, the embargo ``time_split`` keeps
before validation (a training label must not look into the test period). A fit part
shorter than that (120 days of history leave about 21 fit days for a 30-day horizon)
holds no fold: the defaults are used and the metadata says why.

Each configuration is scored by its mean average precision (PR-AUC) over the folds,
uncalibrated: Platt scaling is monotone, so it would not change the ranking. The
defaults are always tried first and only a strictly better mean replaces them, so the
search never does worse on the folds than the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from feature_repo.spec import TIMESTAMP_FIELD
from training.labels import LABEL
from training.models import DEFAULT_PARAMS, ModelKind, build_model

FOLDS = 3
# A fold trains on at least this many as-of times: fewer teach a model too little to
# rank configurations by.
MIN_TRAIN_TIMES = 7
# Tried in this order, the defaults first; a budget of B tries the first B. Logistic: the
# regularisation strength, spread out first. Boosted: simpler trees first (the demo's
# boosted model trails the logistic one), then faster learning and bigger trees.
GRIDS: dict[ModelKind, list[dict[str, float]]] = {
    "logistic": [DEFAULT_PARAMS["logistic"]] + [{"C": c} for c in (0.03, 3.0, 0.1, 1.0, 0.01)],
    "boosted": [DEFAULT_PARAMS["boosted"]]
    + [
        {
            "learning_rate": lr,
            "max_leaf_nodes": leaves,
            "min_samples_leaf": leaf,
            "l2_regularization": l2,
        }
        for lr, leaves, leaf, l2 in (
            (0.05, 7, 200, 3.0),
            (0.1, 15, 200, 1.0),
            (0.03, 15, 100, 1.0),
            (0.05, 63, 50, 0.1),
            (0.1, 7, 300, 3.0),
        )
    ],
}


@dataclass(frozen=True)
class Fold:
    """As-of times a configuration is fitted on and scored on; train ends a horizon early."""

    train: list[pd.Timestamp]
    test: list[pd.Timestamp]

    def describe(self) -> dict[str, list[str]]:
        return {name: [str(min(part)), str(max(part))]
                for name, part in (("train", self.train), ("test", self.test))}  # fmt: skip


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


def time_folds(
    times: list[pd.Timestamp],
    horizon_days: int,
    folds: int = FOLDS,
    min_train_times: int = MIN_TRAIN_TIMES,
) -> list[Fold]:
    """Expanding-window folds over as-of times; ``[]`` when none fits.

    The test times are those with at least ``min_train_times`` times a horizon or more
    before them, cut into ``folds`` consecutive blocks (fewer when there are fewer test
    times); each block trains on every time at least ``horizon_days`` before its first.
    """
    ordered = sorted(set(times))
    horizon = timedelta(days=horizon_days)

    def trainable(first_test: pd.Timestamp) -> list[pd.Timestamp]:
        return [t for t in ordered if t <= first_test - horizon]

    testable = [t for t in ordered if len(trainable(t)) >= min_train_times]
    if not testable:
        return []
    blocks = np.array_split(np.arange(len(testable)), min(folds, len(testable)))
    return [Fold(trainable(testable[block[0]]), [testable[i] for i in block]) for block in blocks]


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
    horizon_days: int,
    budget: int,
    seed: int,
) -> Tuning:
    """Search the first ``budget`` configurations of ``kind`` on time-ordered folds of ``fit``.

    ``fit`` holds the fit rows only (features, ``LABEL`` and the as-of time). A fold whose
    training or test rows hold one class cannot rank anything and is left out.
    """
    grid = candidates(kind, budget)
    defaults = grid[0]
    if budget == 1:
        return Tuning(kind, budget, [], [], defaults, "budget 1: the defaults only")
    folds = [
        fold
        for fold in time_folds(list(fit[TIMESTAMP_FIELD].unique()), horizon_days)
        if all(_rows(fit, part)[LABEL].nunique() == 2 for part in (fold.train, fold.test))
    ]
    if not folds:
        days = fit[TIMESTAMP_FIELD].nunique()
        return Tuning(kind, budget, [], [], defaults, (
            f"{days} fit as-of times hold no fold: a fold trains on at least {MIN_TRAIN_TIMES} "
            f"as-of times that end {horizon_days} days (the horizon) before its test times"
        ))  # fmt: skip
    names = numeric + categorical
    trials = []
    for params in grid:
        scores = []
        for fold in folds:
            train, test = _rows(fit, fold.train), _rows(fit, fold.test)
            model = build_model(kind, numeric, categorical, seed, params)
            model.fit(train[names], train[LABEL])
            predicted = model.predict_proba(test[names])[:, 1]
            scores.append(float(average_precision_score(test[LABEL], predicted)))
        trials.append(Trial(params, scores))
    return Tuning(kind, budget, folds, trials, best_trial(trials).params)


def _rows(frame: pd.DataFrame, times: list[pd.Timestamp]) -> pd.DataFrame:
    return frame[frame[TIMESTAMP_FIELD].isin(times)]
