"""How good the models are: each demo world's model table beside the references, and the
observable ceiling.

python benchmarks/model_quality.py [--users 2000] [--days 120] [--scenario baseline purchases]

Each world is seed 42 as of a pinned clock (the same rows on any date), through the demo's
own stages up to the gate (``churn.demo.build_demo``: both models trained and tuned, and the
gate's verdict).
The table holds validation PR-AUC, ROC-AUC, the precision of the top 5 %, the mean nightly
precision@K and ROC-AUC over the oracle's, for both models and the references.

"ceiling" is a boosted model (the tuned parameters) given, beside every feature, each of the
last ``max(window)`` days one by one (active or not; logins, failed payments and tickets of the
last 14): everything the events show of the recent past. When it scores no better than the
models, the gap to the oracle (which reads the hidden state) is not in the data, and no
feature can close it.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from churn.demo import build_demo
from churn.progress import StageLog
from core import partitions
from core.engines import open_engine
from core.settings import Settings, get_settings
from core.tables import USER_DAILY, register_table
from feature_repo.redis_server import ensure_redis
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_store
from ingestion.generate import SCENARIOS
from training.dataset import training_set
from training.evaluation import evaluate
from training.labels import LABEL, build_labels
from training.models import build_model, informative_features, split_columns
from training.train import TrainResult, time_split

NOW = datetime(2026, 11, 27, 6, tzinfo=UTC)
DAILY_LAGS = {"active": None, "logins": 14, "payments_failed": 14, "tickets": 14}


def daily_lags(settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """For each (user, T): the user's day T-k, one column per metric and k (0 when idle)."""
    engine = open_engine(settings)
    days = partitions.partition_days(settings.user_daily_path)
    register_table(engine, USER_DAILY, settings.user_daily_path, days)
    daily = engine.frame(f"SELECT {ENTITY_KEY}, date, {', '.join(DAILY_LAGS)} FROM {USER_DAILY}")
    first = pd.Timestamp(daily["date"].min())
    users = {u: i for i, u in enumerate(sorted(daily[ENTITY_KEY].unique()))}
    width = (pd.Timestamp(daily["date"].max()) - first).days + 1
    user = daily[ENTITY_KEY].map(users).to_numpy()
    day = (pd.to_datetime(daily["date"]) - first).dt.days.to_numpy()
    at = rows[ENTITY_KEY].map(users).to_numpy()
    asof = (rows[TIMESTAMP_FIELD].dt.tz_convert(None) - first).dt.days.to_numpy()
    out = {}
    for metric, lags in DAILY_LAGS.items():
        grid = np.zeros((len(users), width), np.float32)
        grid[user, day] = daily[metric].to_numpy()
        for k in range(1, (lags or max(settings.windows)) + 1):
            out[f"{metric}_day_minus_{k}"] = grid[at, asof - k]  # T - k is inside the history
    return pd.DataFrame(out, index=rows.index)


def ceiling(settings: Settings, result: TrainResult) -> dict:
    """The tuned boosted model on every feature plus the recent days one by one."""
    data = training_set(settings, build_labels(settings))
    frame = data.frame
    split = time_split(list(frame[TIMESTAMP_FIELD]), settings)
    frame = pd.concat([frame, daily_lags(settings, frame)], axis=1)
    fit = frame[frame[TIMESTAMP_FIELD].isin(split.fit)]
    val = frame[frame[TIMESTAMP_FIELD].isin(split.validation)]
    lags = [c for c in frame if "_day_minus_" in c]
    names, _ = informative_features(fit, data.feature_names + lags)
    numeric, categorical = split_columns(frame, names)
    model = build_model("boosted", numeric, categorical, settings.seed,
                        result.tuning["boosted"].chosen)  # fmt: skip
    model.fit(fit[names], fit[LABEL])
    nights = val[TIMESTAMP_FIELD].to_numpy()
    score = model.predict_proba(val[names])[:, 1]
    return evaluate(val[LABEL].to_numpy(), score, k=settings.top_k, nights=nights)


def world_table(title: str, result: TrainResult, top: dict, verdict: str) -> Table:
    table = Table(title=title, caption=verdict)
    for header in ("", "PR-AUC", "ROC-AUC", "top-5 %", "P@K per night", "ROC / oracle"):
        table.add_column(header, justify="left" if not header else "right")
    oracle = result.references.get("oracle", {}).get("roc_auc")
    rows = {**result.metrics, "ceiling": top, **result.references}
    for name, m in rows.items():
        ratio = f"{m['roc_auc'] / oracle:.3f}" if oracle and name != "oracle" else ""
        table.add_row(name, f"{m['pr_auc']:.3f}", f"{m['roc_auc']:.3f}",
                      f"{m['precision_top']:.3f}", f"{m['precision_at_k']:.3f}", ratio)  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument(
        "--scenario", nargs="+", choices=SCENARIOS, default=["baseline", "purchases"]
    )
    args = parser.parse_args()
    console = Console(width=120)
    for scenario in args.scenario:
        with tempfile.TemporaryDirectory(prefix="churn-quality-") as tmp:
            settings = get_settings(
                data_dir=Path(tmp) / "data",
                artifacts_dir=Path(tmp) / "artifacts",
                feast_project=f"quality_{uuid.uuid4().hex[:8]}",
            )
            settings = ensure_redis(settings, say=console.print)  # the demo materializes
            try:
                with console.status(f"{scenario}: the demo's stages up to the gate"):
                    log = StageLog(Console(file=io.StringIO()))
                    built = build_demo(settings, args.users, args.days, log, NOW, scenario=scenario)
                result, decision = built.trained, built.promoted.decision
                with console.status(f"{scenario}: the observable ceiling"):
                    top = ceiling(settings, result)
            finally:
                open_store(settings).teardown()
        verdict = ("promoted " if decision.promote else "refused ") + result.best
        title = (
            f"{scenario}: {args.users:,} users × {args.days} days, seed {settings.seed}, "
            f"base rate {result.positive_rate['validation']:.3f}, "
            f"{result.rows['validation']:,} validation rows"
        )
        console.print(world_table(title, result, top, verdict))
        for kind, tuning in result.tuning.items():
            console.print(f"  tuning {kind}: {tuning.summary()}")
        for reason in decision.reasons:
            console.print(f"  {reason}")


if __name__ == "__main__":
    main()
