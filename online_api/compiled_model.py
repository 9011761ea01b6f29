"""The online scorer: a registered model compiled once into numpy arrays, scored without pandas.

Per request, sklearn costs milliseconds in DataFrame handling and input validation,
not in arithmetic. ``Scorer.from_model`` reads the fitted arrays out of the
calibrated pipeline that ``training.models`` builds (imputer, scaler, encoders,
coefficients or trees, Platt's ``a``/``b``) and replays them on plain arrays.
Parity with ``model.predict_proba(frame)[:, 1]`` is the contract: it is checked
on probe rows at every load, so a scikit-learn upgrade that changes the private
tree layout fails the load instead of serving wrong scores.

Inputs mirror the pipeline, not an idea of it: a numeric None is NaN (imputed or
routed by the trees); a categorical NaN becomes the imputer's "unknown", but a
categorical None is not NaN to SimpleImputer, so it is looked up as None (a
category if training had None, otherwise unseen: no one-hot column, ordinal -1).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV

_PARITY = 1e-9
_CHUNK = 64  # rows per tree walk: ~21 µs/row at 32–128 rows, ~65 µs/row at 500 (cache)
_ABSENT = float("nan")  # an absent key, as pd.DataFrame(rows) fills it
_LARGEST = float(np.finfo(float).max)


# Effects below this (probability points) are not reasons anyone should act on.
MIN_EFFECT = 1e-4


@dataclass(slots=True)
class Factor:
    """A feature raising this user's risk. ``effect`` is in probability on the 0–1 scale
    (0.05 = five percentage points): the user's score minus the score with this one
    feature at its training reference value, all else as the user's. (Not frozen: a
    frozen dataclass is built three times slower, three per answer; orjson writes it
    as the answer's ``{"feature", "value", "effect"}``.)"""

    feature: str
    value: object
    effect: float


class _Logistic:
    """Imputer → scaler → one-hot → logistic regression, as arrays (unfolded, as sklearn does)."""

    def __init__(self, pipeline, categories: list[list]) -> None:
        # (as_float →) imputer → scaler: the arrays are floats already; models trained
        # before as_float existed have no such step.
        *_, imputer, scaler = pipeline[0].named_transformers_["numeric"]
        coef, self.intercept = pipeline[-1].coef_[0], float(pipeline[-1].intercept_[0])
        # A column all-NaN at fit has no median: SimpleImputer drops it from its output.
        self.kept = np.flatnonzero(~np.isnan(imputer.statistics_))
        self.median = imputer.statistics_[self.kept]
        self.flagged = imputer.indicator_.features_ if imputer.add_indicator else np.array([], int)
        width = self.kept.size + self.flagged.size
        self.mean, self.scale, self.coef = scaler.mean_, scaler.scale_, coef[:width]
        # One block per feature, each after a zero: code -1 (unseen) lands on that zero,
        # as handle_unknown="ignore" gives an all-zero one-hot row.
        blocks, offsets, start = [], [], width
        for cats in categories:
            blocks += [[0.0], coef[start : start + len(cats)]]
            offsets.append(sum(map(len, blocks)) - len(cats))
            start += len(cats)
        if start != coef.size:
            raise ValueError("logistic coefficients do not match the fitted columns")
        self.weights, self.offsets = np.concatenate(blocks), np.array(offsets, np.intp)
        # Per numeric input column: the margin's slope in its imputed value and in its
        # missing flag (the scaler's mean only shifts the intercept, so differences drop it).
        kept, columns = self.kept.size, imputer.statistics_.size
        self.slope, self.fill = np.zeros(columns), np.zeros(columns)
        self.slope[self.kept] = coef[:kept] / self.scale[:kept]
        self.fill[self.kept] = self.median
        self.flag_slope = np.zeros(columns)
        self.flag_slope[self.flagged] = coef[kept:width] / self.scale[kept:width]
        # A missing value's whole term (its imputed value and its flag), and the margin's
        # constant: the intercept with the scaler's mean folded in.
        self.missing_term = self.slope * self.fill + self.flag_slope
        self.constant = self.intercept - float(np.sum(self.coef * self.mean / self.scale))

    def numeric_terms(self, values: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Each value's share of the margin (up to a constant), for values of ``columns``."""
        missing = np.isnan(values)
        filled = np.where(missing, self.fill[columns], values)
        return self.slope[columns] * filled + self.flag_slope[columns] * missing

    def categorical_terms(self, codes: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Each code's share of the margin, for codes of categorical ``columns``."""
        return self.weights[codes + self.offsets[columns]]

    def terms(self, numeric: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every input column's share of the margin, numeric and categorical, for all rows:
        the margin is their sum plus ``constant``."""
        numeric_terms = np.where(np.isnan(numeric), self.missing_term, self.slope * numeric)
        return numeric_terms, self.weights[codes + self.offsets]

    def margin(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """decision_function of the pipeline for encoded rows."""
        numeric_terms, categorical_terms = self.terms(numeric, codes)
        return numeric_terms.sum(axis=1) + categorical_terms.sum(axis=1) + self.constant


class _Boosted:
    """All trees of a HistGradientBoostingClassifier as one node table, walked level by level.

    Every split becomes ``go right iff row[column] > threshold``, so a level costs a
    handful of numpy gathers for all rows and trees at once. Numeric features appear
    twice, NaN as -inf where missing values go left and as +inf where they go right
    (``missing_go_to_left``; the "NaN vs the rest" split's +inf threshold becomes the
    largest float). Each categorical split gets a 0/1 column, looked up per row from
    its bitsets: unknown codes follow the missing direction, as sklearn's predictor.
    Leaves point at themselves, so ``depth`` levels reach every leaf.
    """

    def __init__(self, booster, outer: list[dict], n_numeric: int) -> None:
        if booster.n_trees_per_iteration_ != 1:
            raise ValueError("only binary boosted models are supported")
        # The booster re-encodes categorical columns in its own ColumnTransformer, which
        # puts them first: map its feature indices back to ours, compose the encodings.
        self.codes, inner = outer, getattr(booster, "_preprocessor", None)
        order = np.arange(booster.n_features_in_)
        if inner is not None:
            mask = booster.is_categorical_
            order = np.r_[np.flatnonzero(mask), np.flatnonzero(~mask)]
            recode = [
                {code: j for j, code in enumerate(cats) if code == code}
                for cats in inner.named_transformers_["encoder"].categories_
            ]
            self.codes = [
                {cat: recode[k][code] for cat, code in codes.items() if code in recode[k]}
                for k, codes in enumerate(outer)
            ]
        known, f_idx_map = booster._bin_mapper.make_known_categories_bitsets()
        trees = [predictors[0] for predictors in booster._predictors]
        nodes = np.concatenate([t.nodes for t in trees])
        sizes = [t.nodes.size for t in trees]
        roots = np.cumsum([0, *sizes[:-1]])
        shift, own = np.repeat(roots, sizes), np.arange(nodes.size)
        depths = np.array([t.get_max_depth() for t in trees])
        deepest = np.argsort(-depths, kind="stable")
        self.roots = 2 * roots[deepest]
        self.active = [int((depths > level).sum()) for level in range(depths.max())]
        leaf, split_on = nodes["is_leaf"].astype(bool), nodes["feature_idx"]
        categorical = np.flatnonzero(nodes["is_categorical"].astype(bool) & ~leaf)
        missing_right = ~nodes["missing_go_to_left"].astype(bool)
        column = order[split_on] + n_numeric * missing_right
        column[categorical] = 2 * n_numeric + np.arange(categorical.size)
        column[leaf] = 0
        threshold = np.minimum(nodes["num_threshold"], _LARGEST)
        threshold[categorical] = 0.5
        self.column, self.threshold = np.repeat(column, 2), np.repeat(threshold, 2)
        # The walk carries 2 * node, so "+ went right" picks the child with one gather:
        # children[2 * node + right] = 2 * that child. Per-node arrays are doubled to match.
        left = np.where(leaf, own, nodes["left"].astype(np.intp) + shift)
        right = np.where(leaf, own, nodes["right"].astype(np.intp) + shift)
        self.children = 2 * np.stack([left, right], axis=1).ravel()
        # goes_right[j, code + 1] for the j-th categorical split; code -1 is unseen.
        goes_right = np.empty((categorical.size, 257))
        for j, i in enumerate(categorical):
            tree = trees[np.searchsorted(roots, i, side="right") - 1]
            left = _members(tree.raw_left_cat_bitsets[nodes["bitset_idx"][i]])
            unknown = ~_members(known[f_idx_map[split_on[i]]])
            goes_left = np.r_[not missing_right[i], left | (unknown & ~missing_right[i])]
            goes_right[j] = ~goes_left
        # Flat, so one gather reads goes_right[j, code + 1] for every split j of a row.
        self.goes_right = goes_right.ravel()
        self.split_base = 257 * np.arange(categorical.size) + 1
        self.split_feature = order[split_on[categorical]] - n_numeric
        self.value = np.repeat(nodes["value"], 2)
        self.baseline = float(booster._baseline_prediction[0, 0])

    def margin(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Raw log-odds (decision_function) for encoded rows: baseline plus all leaf values."""
        if numeric.shape[0] > _CHUNK:  # small chunks keep the gathers in cache
            parts = range(0, numeric.shape[0], _CHUNK)
            return np.concatenate(
                [self.margin(numeric[i : i + _CHUNK], codes[i : i + _CHUNK]) for i in parts]
            )
        n, trees = numeric.shape[0], self.roots.size
        finite, missing = np.minimum(numeric, _LARGEST), np.isnan(numeric)
        categories = self.goes_right[self.split_base + codes[:, self.split_feature]]
        low, high = np.where(missing, -np.inf, finite), np.where(missing, np.inf, finite)
        flat = np.hstack([low, high, categories]).ravel()
        # One flat walk over (tree, row) pairs, deepest trees first: level by level only a
        # shrinking prefix still moves. A single row needs no row offsets.
        node = np.repeat(self.roots, n)
        offset = np.tile(np.arange(n) * (flat.size // n), trees)
        for active in self.active:
            moving = node[: active * n]
            index = self.column[moving]
            if n > 1:
                index += offset[: active * n]
            right = flat[index] > self.threshold[moving]
            node[: active * n] = self.children[np.add(moving, right, dtype=np.intp)]
        return self.value[node].reshape(trees, n).sum(axis=0) + self.baseline


class Scorer:
    """One model version, compiled for single-row and batch scoring."""

    def __init__(self, model: CalibratedClassifierCV, metadata: dict) -> None:
        if len(model.calibrated_classifiers_) != 1 or model.method != "sigmoid":
            raise ValueError(
                "expected one sigmoid calibrator (FrozenEstimator, as training.models.calibrate)"
            )
        calibrated = model.calibrated_classifiers_[0]
        pipeline = calibrated.estimator.estimator
        columns = {name: list(cols) for name, _, cols in pipeline[0].transformers_}
        self.numeric, self.categorical = columns["numeric"], columns["categorical"]
        expected = (metadata["numeric_features"], metadata["categorical_features"])
        if (self.numeric, self.categorical) != (list(expected[0]), list(expected[1])):
            raise ValueError("metadata feature lists do not match the model's columns")
        refs = metadata.get("feature_refs") or self.numeric + self.categorical
        self.feature_names: list[str] = [ref.split(":", 1)[-1] for ref in refs]
        self.version: str = str(metadata.get("version", ""))
        self.kind = "logistic" if hasattr(pipeline[-1], "coef_") else "boosted"
        if metadata.get("model_kind", self.kind) != self.kind:
            raise ValueError(f"metadata says {metadata['model_kind']!r}, the model is {self.kind}")
        encode = pipeline[0].named_transformers_["categorical"]
        self.fill = encode[0].fill_value
        cats = [list(c) for c in encode[-1].categories_]
        outer = [{c: i for i, c in enumerate(values)} for values in cats]
        if self.kind == "logistic":
            self.compiled: _Logistic | _Boosted = _Logistic(pipeline, cats)
            self.codes = outer
        else:
            boosted = _Boosted(pipeline[-1], outer, len(self.numeric))
            self.compiled, self.codes = boosted, boosted.codes
        calibrator = calibrated.calibrators[0]
        self.a, self.b = float(calibrator.a_), float(calibrator.b_)
        self._numeric_of = _values_of(self.numeric)
        self._categorical_of = _values_of(self.categorical)
        bins = metadata.get("reference_bins") or {}
        self.references = _references(bins)
        # The features explain_many varies, in feature_names order ("slots"), with their
        # input column and reference value (code, for categorical ones).
        slots = [name for name in self.feature_names if name in self.references]
        numeric_slots = [i for i, name in enumerate(slots) if name in self.numeric]
        categorical_slots = [i for i, name in enumerate(slots) if name in self.categorical]
        self._slots = slots
        self._num_slot = np.array(numeric_slots, np.intp)
        self._num_col = np.array([self.numeric.index(slots[i]) for i in numeric_slots], np.intp)
        self._num_ref = np.array([self.references[slots[i]] for i in numeric_slots], float)
        self._cat_slot = np.array(categorical_slots, np.intp)
        self._cat_col = np.array([self.categorical.index(slots[i]) for i in categorical_slots],
                                 np.intp)  # fmt: skip
        self._cat_ref = np.array(
            [self._code(int(k), self.references[slots[i]])
             for i, k in zip(categorical_slots, self._cat_col, strict=True)], np.intp,
        )  # fmt: skip
        if isinstance(self.compiled, _Logistic):
            # Each slot's column among a row's terms (numeric, then categorical), and the
            # term its reference value gives, once.
            self._term_col = np.empty(len(slots), np.intp)
            self._term_col[self._num_slot] = self._num_col
            self._term_col[self._cat_slot] = len(self.numeric) + self._cat_col
            self._ref_term = np.empty(len(slots))
            self._ref_term[self._num_slot] = self.compiled.numeric_terms(
                self._num_ref, self._num_col
            )
            self._ref_term[self._cat_slot] = self.compiled.categorical_terms(
                self._cat_ref, self._cat_col
            )
        self._edges = {name: bins.get(name, {}).get("edges", []) for name in self.numeric}

    @classmethod
    def from_model(
        cls, model: CalibratedClassifierCV, metadata: dict, verify: bool = True
    ) -> Scorer:
        """Compile ``model``; with ``verify``, raise unless probe rows match predict_proba."""
        scorer = cls(model, metadata)
        if verify:
            probes = scorer._probes()
            expected = model.predict_proba(pd.DataFrame(probes, columns=scorer.feature_names))
            worst = np.max(np.abs(scorer.score_many(probes) - expected[:, 1]))
            if not worst <= _PARITY:
                raise RuntimeError(f"compiled scorer differs from predict_proba by {worst:.3g}")
        return scorer

    def score(self, row: dict[str, object]) -> float:
        """Churn probability of one user; an absent key counts as a missing (NaN) value."""
        return float(self.score_many([row])[0])

    def score_many(self, rows: list[dict[str, object]]) -> np.ndarray:
        """Churn probabilities of many users, in order, in one vectorised pass."""
        if not rows:
            return np.empty(0)
        return self._probability(*self._encode(rows))

    def top_factors(self, row: dict[str, object], n: int = 3) -> list[Factor]:
        """Up to ``n`` features whose value raises this user's risk most (see ``explain_many``)."""
        return self.explain_many([row], n)[1][0]

    def explain_many(
        self, rows: list[dict[str, object]], n: int = 3
    ) -> tuple[np.ndarray, list[list[Factor]]]:
        """Each row's risk and up to ``n`` features raising it most over their reference value.

        Each feature in turn is set to its training reference (median, or most frequent
        category); the score drop is its effect. Features that raise the risk by no more
        than ``MIN_EFFECT`` (noise to a reader: a saturated risk moves by 1e-9), sit
        at their reference (effect exactly 0, not re-scored) or have none are left out.
        The rows and all their one-feature variants are scored in one pass: the request
        path encodes once and calls numpy a fixed number of times, whatever the width.
        """
        if not rows:
            return np.empty(0), []
        numeric, codes = self._encode(rows)
        margins = self._variant_margins(numeric, codes)
        calibrated = self._calibrated(margins)
        risks = calibrated[:, 0]
        # Exactly 0 for a feature at its reference: its variant is the row itself.
        effects = risks[:, None] - calibrated[:, 1:]
        # Largest first; the stable sort keeps feature order among equal effects.
        order = np.argsort(-effects, axis=1, kind="stable")[:, :n]
        top = effects[np.arange(len(rows))[:, None], order]
        factors = [
            [
                Factor(self._slots[j], row.get(self._slots[j]), effect)
                for j, effect in zip(slots, row_effects, strict=True)
                if effect > MIN_EFFECT
            ]
            for row, slots, row_effects in zip(rows, order.tolist(), top.tolist(), strict=True)
        ]
        return risks, factors

    def _variant_margins(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Per row: its margin, then its margin with each slot in turn at its reference.

        A logistic margin is a sum of per-feature terms: a variant is the margin minus the
        change in one term, a few array operations for every row and slot at once. Trees
        are re-scored: every row with each slot that differs from its reference, in one
        pass; a slot at its reference keeps the row's own margin.
        """
        compiled = self.compiled
        if isinstance(compiled, _Logistic):
            numeric_terms, categorical_terms = compiled.terms(numeric, codes)
            terms = np.hstack((numeric_terms, categorical_terms))
            margin = terms.sum(axis=1) + compiled.constant
            change = terms[:, self._term_col] - self._ref_term
            return margin[:, None] - np.hstack((np.zeros((len(margin), 1)), change))
        differs = np.empty((numeric.shape[0], len(self._slots)), bool)
        differs[:, self._num_slot] = ~(numeric[:, self._num_col] == self._num_ref)  # NaN too
        differs[:, self._cat_slot] = codes[:, self._cat_col] != self._cat_ref
        margin = compiled.margin(numeric, codes)
        margins = np.repeat(margin[:, None], 1 + differs.shape[1], axis=1)
        owner, slot = np.nonzero(differs)
        if owner.size == 0:
            return margins
        varied_numeric, varied_codes = numeric[owner], codes[owner]
        is_numeric = np.isin(slot, self._num_slot)
        where = np.searchsorted(self._num_slot, slot[is_numeric])
        varied_numeric[is_numeric, self._num_col[where]] = self._num_ref[where]
        where = np.searchsorted(self._cat_slot, slot[~is_numeric])
        varied_codes[~is_numeric, self._cat_col[where]] = self._cat_ref[where]
        margins[owner, 1 + slot] = compiled.margin(varied_numeric, varied_codes)
        return margins

    def _encode(self, rows: list[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
        """Numeric values (None and absent as NaN) and category codes, one row per input."""
        try:  # rows from the online store have every key: one C call per row
            numeric = [self._numeric_of(r) for r in rows]
            categorical = [self._categorical_of(r) for r in rows]
        except KeyError:
            numeric = [[r.get(n, _ABSENT) for n in self.numeric] for r in rows]
            categorical = [[r.get(n, _ABSENT) for n in self.categorical] for r in rows]
        codes = [[self._code(k, v) for k, v in enumerate(values)] for values in categorical]
        return (
            np.array(numeric, float).reshape(len(rows), len(self.numeric)),
            np.array(codes, np.intp).reshape(len(rows), len(self.categorical)),
        )

    def _probability(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return self._calibrated(self.compiled.margin(numeric, codes))

    def _calibrated(self, margin: np.ndarray) -> np.ndarray:
        # _SigmoidCalibration.predict: expit(-(a * f + b)), f the decision_function.
        return expit(-(self.a * margin + self.b))

    def _code(self, k: int, value: object) -> int:
        if isinstance(value, float) and value != value:
            value = self.fill  # SimpleImputer fills NaN only; None stays a value
        return self.codes[k].get(value, -1)

    def _probes(self) -> list[dict[str, object]]:
        """Rows that touch every branch kind: reference, all missing, unseen, bin edges."""
        base = {name: self.references.get(name) for name in self.feature_names}
        rows = [base, dict.fromkeys(self.feature_names)]
        rows.append(base | {name: "__unseen__" for name in self.categorical})
        rows.append(base | {name: float("nan") for name in self.categorical})
        for name in self.numeric:
            rows += [base | {name: value} for value in (-1e9, *self._edges[name], 1e9)]
        for k, name in enumerate(self.categorical):
            rows += [base | {name: c} for c in self.codes[k]]
        return rows


def _values_of(names: list[str]) -> Callable[[dict[str, object]], list[object]]:
    """``row -> [row[name] for name in names]`` in one C call (KeyError for an absent name)."""
    if not names:
        return lambda row: []
    get = operator.itemgetter(*names)
    return (lambda row: [get(row)]) if len(names) == 1 else (lambda row: list(get(row)))


def _members(bitset: np.ndarray) -> np.ndarray:
    """The 256 membership flags of one scikit-learn category bitset (8 × uint32)."""
    codes = np.arange(256)
    return ((bitset[codes // 32] >> (codes % 32).astype(np.uint32)) & 1).astype(bool)


def _references(bins: dict[str, dict]) -> dict[str, object]:
    """Reference values from ``reference_bins``: numeric, the decile cut point where the
    training share reaches one half (the median, to within a decile); categorical, the
    most frequent category."""
    out: dict[str, object] = {}
    for name, spec in bins.items():
        if spec["kind"] == "numeric" and spec["edges"]:
            share = np.cumsum(spec["proportions"][: len(spec["edges"])])
            index = min(int(np.searchsorted(share, 0.5)), len(spec["edges"]) - 1)
            out[name] = float(spec["edges"][index])
        elif spec["kind"] == "categorical" and spec["proportions"]:
            out[name] = max(spec["proportions"], key=spec["proportions"].get)
    return out
