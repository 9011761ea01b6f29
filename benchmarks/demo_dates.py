"""The default demo's gate verdict and validation metrics on consecutive end dates.

python benchmarks/demo_dates.py [--dates 14] [--first 2026-11-27] [--users 2000] [--seed 42]

Runs the demo pipeline without serving (``churn.demo.build_demo``) as of each date, at
a different time of day each, with a registry of its own per date (each candidate meets
the gate with no production model, as in ``make demo``), and prints one row per date.
"""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, date, datetime

from rich.console import Console
from rich.table import Table
from runner import bench_settings

from churn.cli import DEMO_DAYS, DEMO_USERS
from churn.demo import replay_demo
from feature_repo.store import open_store

COLUMNS = {
    "PR-AUC": "pr_auc",
    "skill": "pr_auc_skill",
    "ROC-AUC": "roc_auc",
    "P@K": "precision_at_k",
    "base rate": "base_rate",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dates", type=int, default=14)
    parser.add_argument("--first", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--users", type=int, default=DEMO_USERS)
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    tmp, base = bench_settings("demo-dates-")
    if args.seed is not None:
        base = base.model_copy(update={"seed": args.seed})
    console = Console()
    if not console.is_terminal:  # a log file: wide enough for one line per date
        console = Console(width=160)
    table = Table(title=f"make demo's world ({args.users:,} users × {args.days} days, "
                        f"seed {base.seed}) as of {args.dates} consecutive days")  # fmt: skip
    for header in ("run at (UTC)", "last day", "verdict", "best", *COLUMNS, "recency PR/ROC",
                   "val rows"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("verdict", "best") else "right")
    replays = replay_demo(base, args.users, args.days, args.first, args.dates, tmp)
    try:
        with console.status(f"the demo as of {args.dates} days from {args.first}"):
            for now, _, build in replays:
                trained, decision = build.trained, build.promoted.decision
                metrics = trained.metrics[trained.best]
                recency = trained.references["recency"]
                verdict = "promoted" if decision.promote else "refused"
                table.add_row(
                    f"{now:%Y-%m-%d %H:%M}",
                    str(build.last_day),
                    verdict + ("" if decision.promote else ": " + "; ".join(decision.failed)),
                    trained.best,
                    *(f"{metrics[key]:.3f}" for key in COLUMNS.values()),
                    f"{recency['pr_auc']:.3f} / {recency['roc_auc']:.3f}",
                    f"{trained.rows['validation']:,}",
                )
                console.print(f"{now:%Y-%m-%d %H:%M}: {verdict}")
    finally:
        try:
            open_store(base).teardown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    console.print(table)
    console.print(
        f"gate: ROC-AUC ≥ {base.min_roc_auc}, PR-AUC skill ≥ {base.min_pr_auc_skill}, "
        f"PR-AUC and ROC-AUC ≥ recency's + {base.recency_margin} (P@K: K = {base.top_k} a night)"
    )


if __name__ == "__main__":
    main()
