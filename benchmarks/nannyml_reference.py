"""What NannyML's CBPE estimates on fixed score distributions, recorded for the suite.

    python -m venv /tmp/nm && /tmp/nm/bin/pip install nannyml==0.13.1 statsmodels
    /tmp/nm/bin/python benchmarks/nannyml_reference.py   # writes tests/unit/recorded/nannyml_cbpe.json

NannyML cannot be a dependency, not even a dev one: it needs python-dateutil<3 (the images
pin 4.0.0) and brings about 40 packages. So it runs here, in a venv of its own, and
``tests/unit/test_cbpe_against_nannyml.py`` checks ``monitor.cbpe`` against what it recorded.

The scores need no random generator, so the test rebuilds them exactly: n users whose
calibrated risks are the logistic of evenly spaced normal quantiles, expit(mu + s *
ndtri((i + 0.5) / n)). The reference period's labels (NannyML fits its calibration check on
them) are drawn from the reference scores with ``SEED``. Chunks: the reference distribution,
a riskier one, a flatter one (less to rank on) and a small chunk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, ndtri

OUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "recorded" / "nannyml_cbpe.json"
SEED = 27
REFERENCE = {"mu": -2.6, "s": 1.1, "n": 50_000}
CHUNKS = [
    {"name": "as reference", "mu": -2.6, "s": 1.1, "n": 20_000},
    {"name": "riskier", "mu": -1.6, "s": 1.1, "n": 20_000},
    {"name": "flatter", "mu": -2.4, "s": 0.6, "n": 20_000},
    {"name": "small", "mu": -2.6, "s": 1.1, "n": 2_000},
]


def scores(mu: float, s: float, n: int) -> np.ndarray:
    """Calibrated risks of n users: expit(mu + s * ndtri((i + 0.5) / n))."""
    return expit(mu + s * ndtri((np.arange(n) + 0.5) / n))


def frame(p: np.ndarray, y: np.ndarray | None) -> pd.DataFrame:
    out = pd.DataFrame({"p": p, "y_pred": (p >= 0.5).astype(int)})
    if y is not None:
        out["y"] = y
    return out


def main() -> None:
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no usage upload from here
    import nannyml

    rng = np.random.default_rng(SEED)
    p_ref = scores(**REFERENCE)
    reference = frame(p_ref, (rng.random(p_ref.size) < p_ref).astype(int))
    recorded = []
    for chunk in CHUNKS:
        estimator = nannyml.CBPE(
            y_pred_proba="p", y_pred="y_pred", y_true="y", problem_type="classification_binary",
            metrics=["roc_auc", "average_precision"], chunk_number=1,
        )  # fmt: skip
        estimator.fit(reference)
        p = scores(chunk["mu"], chunk["s"], chunk["n"])
        result = estimator.estimate(frame(p, None)).to_df()
        result = result[result[("chunk", "period")] == "analysis"]  # not the reference's
        recorded.append(
            chunk
            | {
                "roc_auc": float(result[("roc_auc", "value")].iloc[0]),
                "roc_auc_sampling_error": float(result[("roc_auc", "sampling_error")].iloc[0]),
                "average_precision": float(result[("average_precision", "value")].iloc[0]),
                "average_precision_sampling_error": float(
                    result[("average_precision", "sampling_error")].iloc[0]
                ),
            }
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "nannyml": nannyml.__version__,
        "command": "benchmarks/nannyml_reference.py",
        "scores": "expit(mu + s * ndtri((i + 0.5) / n)), i = 0 .. n-1",
        "reference": REFERENCE | {"labels_seed": SEED},
        "chunks": recorded,
    }
    OUT.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
