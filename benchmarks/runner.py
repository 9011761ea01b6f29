"""Benchmark runner: each stage in a fresh process, so its peak RSS is its own.

``bench_features.py``, ``bench_training.py`` and ``bench_batch.py`` name the stages
they time; this module runs them under a temporary data dir and a Feast project of
their own, removes both, and prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

RUNNER = str(Path(__file__).resolve())
STAGES = (
    "generate",
    "validate",
    "prepare+features",
    "daily run",
    "apply",
    "materialize",
    "labels+join",
    "train",
    "promote",
    "batch score",
    "batch score (all)",
)


def run_stage(stage: str, users: int, days: int) -> dict:
    """Run one stage in this process (settings from the environment); return its figures."""
    from churn.settings import get_settings

    settings = get_settings()
    start = time.perf_counter()
    out: dict = {}
    if stage == "generate":
        from ingestion.generate import generate_demo_data, write_demo_data

        data = generate_demo_data(n_users=users, days=days, seed=settings.seed)
        write_demo_data(data, settings)
        out["events"] = len(data.events)
    elif stage == "validate":
        from ingestion.validate import run_validation

        report = run_validation(settings)
        if not report.passed:
            raise SystemExit(f"validation failed: {[f.rule for f in report.failures]}")
        out["events"] = report.stats["events"]
    elif stage == "prepare+features":
        from ingestion.features import build_rolling_features
        from ingestion.prepare import build_user_daily

        daily = build_user_daily(settings)
        t_daily = time.perf_counter() - start
        features = build_rolling_features(settings)
        out |= {"user_days": daily.rows, "feature_rows": features.rows, "prepare_s": t_daily}
    elif stage == "daily run":
        # The nightly path: rebuild only the last day, as `--as-of` does.
        from ingestion import partitions
        from ingestion.features import build_rolling_features
        from ingestion.prepare import build_user_daily

        last = partitions.partition_days(settings.user_daily_path)[-1]
        daily = build_user_daily(settings, as_of=last)
        features = build_rolling_features(settings, as_of=last)
        out |= {"user_days": daily.rows, "feature_rows": features.rows}
    elif stage == "apply":
        from feature_repo.store import apply_definitions

        apply_definitions(settings)
    elif stage == "materialize":
        from feature_repo.store import materialize

        materialize(settings, end=datetime.now(UTC))
    elif stage == "labels+join":
        from training.dataset import training_set
        from training.labels import build_labels

        start = time.perf_counter()  # Feast's import is not the join
        labels = build_labels(settings)
        t_labels = time.perf_counter() - start
        joined = training_set(settings, labels)
        out |= {"rows": len(joined.frame), "labels_s": t_labels}
    elif stage == "train":
        from training.train import train_models

        start = time.perf_counter()
        result = train_models(settings)
        out |= {"rows": sum(result.rows.values()), "pr_auc": result.metrics[result.best]["pr_auc"]}
    elif stage == "promote":
        # Forced: the benchmark needs a production model, not the gate's verdict on it.
        from training.promote import force, latest_candidate

        force(settings, latest_candidate(settings), "benchmark")
    elif stage in ("batch score", "batch score (all)"):
        from batch.score import score_population
        from ingestion import partitions

        if stage == "batch score (all)":  # every user counts as active: the whole table scored
            settings = settings.model_copy(update={"active_lookback_days": days})

        last = partitions.partition_days(settings.user_daily_path)[-1]
        as_of = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        marks: list[float] = []
        start = time.perf_counter()  # Feast's import is not the run
        result = score_population(
            settings, as_of, progress=lambda *_: marks.append(time.perf_counter())
        )
        out |= {
            "scored": result.scored,
            "skipped": result.skipped,
            "high_risk": result.high_risk,
            "join_s": marks[-1] - marks[0],
        }
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


class TreePeak:
    """The peak summed RSS of this process and its descendants, sampled every ``interval``.

    A Spark stage's memory is mostly the JVM and its Python workers, children that
    ``ru_maxrss`` of the stage process never sees.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(os.getpid()))
            self._stop.wait(interval)


def tree_rss_kb(root: int) -> int:
    """RSS of ``root`` and every descendant, from /proc (kB)."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * page_kb
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def bench_settings(prefix: str):  # -> tuple[Path, Settings]
    """A temporary directory and settings of a benchmark's own: data, artifacts, Feast
    project (the caller tears the project down and removes the directory)."""
    from churn.redis_server import ensure_redis
    from churn.settings import get_settings

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    settings = get_settings(
        data_dir=tmp / "data",
        artifacts_dir=tmp / "artifacts",
        feast_project=f"bench_{uuid.uuid4().hex[:8]}",
    )
    return tmp, ensure_redis(settings)


def run_stages(stages: tuple[str, ...], settings, users: int, days: int) -> dict[str, dict]:
    """Run ``stages`` in order, each in a fresh process with ``settings``; their figures."""
    results: dict[str, dict] = {}
    for stage in stages:
        print(f"… {stage} ({settings.engine})", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, RUNNER, "--stage", stage, "--users", str(users), "--days", str(days)],
            env={**os.environ, **settings.as_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{stage} ({settings.engine}) failed:\n{proc.stderr[-3000:]}")
        results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def main(stages: tuple[str, ...] = STAGES) -> None:
    """Run ``stages`` in order (each in its own process) and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        with TreePeak() as peak:
            out = run_stage(args.stage, args.users, args.days)
        out["peak_tree_mb"] = max(peak.peak_kb / 1024, out["peak_rss_mb"])
        print(json.dumps(out))
        return

    from feature_repo.store import open_store

    tmp, settings = bench_settings("bench-features-")
    try:
        results = run_stages(stages, settings, args.users, args.days)
    finally:
        try:
            open_store(settings).teardown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    events = results["generate"]["events"]
    user_days = results["prepare+features"]["user_days"]
    print(f"\n{args.users:,} users × {args.days} days: {events:,} events, {user_days:,} user-days")
    print(f"{'stage':<18}{'seconds':>9}{'peak RSS MB':>13}  throughput")
    for stage, r in results.items():
        if stage in ("generate", "validate"):
            rate = f"{events / r['seconds']:,.0f} events/s"
        elif stage == "prepare+features":
            rate = f"{user_days / r['seconds']:,.0f} user-days/s (prepare {r['prepare_s']:.1f} s)"
        elif stage == "daily run":
            rate = f"one day: {r['feature_rows']:,} feature rows"
        elif stage == "materialize":
            rate = f"{args.users / r['seconds']:,.0f} users/s (newest row per user)"
        elif stage == "labels+join":
            join_s = r["seconds"] - r["labels_s"]
            rate = (
                f"{r['rows'] / join_s:,.0f} rows/s joined ({r['rows']:,} rows; "
                f"labels {r['labels_s']:.1f} s)"
            )
        elif stage == "train":
            rate = f"{r['rows']:,} rows, 2 models, best PR-AUC {r['pr_auc']:.3f}"
        elif stage.startswith("batch score"):
            rate = (
                f"{r['scored'] / r['seconds']:,.0f} users/s ({r['scored']:,} scored, "
                f"{r['skipped']:,} skipped, {r['high_risk']:,} high-risk; join {r['join_s']:.1f} s)"
            )
        else:
            rate = ""
        print(f"{stage:<18}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13,.0f}  {rate}")


if __name__ == "__main__":
    main()
