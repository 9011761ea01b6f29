"""Issue 3's benchmark: the point-in-time join through Feast and training, on the same data.
Issue 25's: a fit on a sample of users against the fit on all of them.

    python benchmarks/bench_training.py [--users 100000] [--days 120]
    python benchmarks/bench_training.py --sample 0.3 [--users 100000] [--keep DIR | --world DIR]

``--sample S``: builds the world (generate, validate, prepare + features, apply), then runs
``churn train``'s function twice, each in a fresh process: on every user
(``CHURN_TRAIN_MAX_USERS`` above the population) and on a share S of the population
(drawn whole, by hash). Both validate on every user of the validation days, so their
PR-AUC is compared on the same rows. It prints users, fit rows, seconds, peak RSS (of the
process tree) and each model's validation PR-AUC. ``--keep DIR`` builds the world in DIR
and keeps it; ``--world DIR`` reuses one kept so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from runner import TreePeak, main, run_stages

BUILD = ("generate", "validate", "prepare+features", "apply")
EVERYONE = 2_000_000_000  # a cap above any population: the full fit
PROJECT_FILE = "feast_project"


def _fit(share: float) -> dict:
    """In this process: ``train_models`` on ``share`` of the population (1: everyone)."""
    import pandas as pd

    from core.settings import get_settings
    from training.labels import AsOfRange, as_of_days, label_counts
    from training.train import time_split, train_models

    settings = get_settings()
    asof = as_of_days(settings)
    users = EVERYONE
    if share < 1:  # the population of the fit days, as training counts it
        split = time_split([pd.Timestamp(d, tz="UTC") for d in asof.days()], settings)
        early = AsOfRange(asof.first, max(split.calibration).date(), asof.stride)
        users = round(share * len(label_counts(settings, early)))
    settings = settings.model_copy(update={"train_max_users": users})
    start = time.perf_counter()
    result = train_models(settings)
    seconds = time.perf_counter() - start
    best = result.metrics[result.best]
    return {
        "share": share,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sample": result.sample.to_dict(),
        "rows": result.rows,
        "pr_auc": {kind: m["pr_auc"] for kind, m in result.metrics.items()},
        "validation": {"rows": best["rows"], "positives": best["positives"]},
        "chosen": {kind: t.chosen for kind, t in result.tuning.items()},
    }


def _child(share: float, settings) -> dict:
    """``_fit`` in a fresh process with ``settings``; its figures and the tree's peak."""
    env = {**os.environ, **settings.as_env(), "OMP_NUM_THREADS": "1"}
    with TreePeak() as peak:
        proc = subprocess.run([sys.executable, __file__, "--fit-share", str(share)], env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"fit of share {share} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out | {"peak_tree_mb": max(peak.peak_kb / 1024, out["peak_rss_mb"])}


def _world(args: argparse.Namespace):  # -> (directory, settings, built here)
    """The world's directory and settings: the one ``--world`` names, or a new one."""
    from core.settings import get_settings

    if args.world:
        root = Path(args.world)
        project = (root / PROJECT_FILE).read_text().strip()
        return root, get_settings(data_dir=root / "data", artifacts_dir=root / "artifacts",
                                  feast_project=project), False  # fmt: skip
    root = Path(args.keep) if args.keep else Path(f"/tmp/bench-training-{uuid.uuid4().hex[:8]}")
    root.mkdir(parents=True, exist_ok=True)
    project = f"bench_{uuid.uuid4().hex[:8]}"
    (root / PROJECT_FILE).write_text(project)
    settings = get_settings(data_dir=root / "data", artifacts_dir=root / "artifacts",
                            feast_project=project)  # fmt: skip
    return root, settings, True


def compare(args: argparse.Namespace) -> None:
    """The full fit and the sampled one on one world, side by side."""
    root, settings, fresh = _world(args)
    try:
        if fresh:
            run_stages(BUILD, settings, args.users, args.days)
        results = []
        for share in (1.0, args.sample):
            runs = settings.model_copy(update={"artifacts_dir": root / f"artifacts-{share:g}"})
            print(f"… train on {share:.0%} of the users", file=sys.stderr, flush=True)
            results.append(_child(share, runs))
    finally:
        if fresh and not args.keep:
            from feature_repo.store import open_store

            open_store(settings).teardown()
            shutil.rmtree(root, ignore_errors=True)
    print_comparison(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def print_comparison(results: list[dict]) -> None:
    """One line per fit, then the sampled fit's PR-AUC minus the full fit's."""
    full, sampled = results
    if full["validation"] != sampled["validation"]:
        raise SystemExit(f"not the same validation rows: {full['validation']} against "
                         f"{sampled['validation']}")  # fmt: skip
    print(f"\nvalidation: {full['validation']['rows']:,} rows "
          f"({full['validation']['positives']:,} churners), the same for both fits")  # fmt: skip
    print(f"{'fit':<10}{'users':>18}{'fit rows':>22}{'seconds':>9}{'peak MB':>9}"
          f"{'PR-AUC log.':>12}{'boosted':>9}")  # fmt: skip
    for r in results:
        s = r["sample"]
        print(f"{r['share']:<10.0%}{s['users']:>9,} of {s['users_total']:<6,}"
              f"{s['rows']:>11,} of {s['rows_total']:<8,}{r['seconds']:>9.1f}"
              f"{r['peak_tree_mb']:>9,.0f}{r['pr_auc']['logistic']:>12.4f}"
              f"{r['pr_auc']['boosted']:>9.4f}")  # fmt: skip
    gap = {k: sampled["pr_auc"][k] - full["pr_auc"][k] for k in full["pr_auc"]}
    print("sampled - full: " + ", ".join(f"{k} {v:+.4f}" for k, v in gap.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=float, help="Compare a fit on this share of users.")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--keep", help="Build the world in this directory and keep it.")
    parser.add_argument("--world", help="Reuse the world kept in this directory.")
    parser.add_argument("--json", help="Also write the figures to this file.")
    parser.add_argument("--fit-share", type=float, help=argparse.SUPPRESS)
    known, _ = parser.parse_known_args()
    if known.fit_share is not None:
        print(json.dumps(_fit(known.fit_share)))
    elif known.sample is not None:
        compare(known)
    else:
        main(("generate", "validate", "prepare+features", "apply", "labels+join", "train"))
