"""Both engines on the same data: the feature build, the point-in-time join, the batch.

python benchmarks/bench_spark.py [--users 100000] [--days 120]

The data is generated and validated once, then copied to a second data dir; each
engine builds its own tables and applies its own registry (a Feast project each). One
model, trained on the DuckDB side, scores on both. Each stage runs in a fresh process:
Spark's figures include starting its JVM (local[2]), and its peak memory is that of the
whole process tree (driver JVM and Python workers), not only of the Python process.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from runner import bench_settings, run_stages

SHARED = ("generate", "validate")
PER_ENGINE = ("prepare+features", "daily run", "apply", "materialize", "labels+join")
BATCH = ("batch score", "batch score (all)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args()

    from feature_repo.store import open_store

    tmp, duck = bench_settings("bench-spark-")
    spark = duck.model_copy(
        update={
            "engine": "spark",
            "data_dir": tmp / "spark" / "data",
            "artifacts_dir": tmp / "spark" / "artifacts",
            "feast_project": f"{duck.feast_project}_spark",
        }
    )
    results: dict[str, dict[str, dict]] = {}
    try:
        shared = run_stages(SHARED, duck, args.users, args.days)
        shutil.copytree(duck.validated_dir, spark.validated_dir)
        results["duckdb"] = run_stages(PER_ENGINE, duck, args.users, args.days)
        results["spark"] = run_stages(PER_ENGINE, spark, args.users, args.days)
        run_stages(("train", "promote"), duck, args.users, args.days)
        shutil.copytree(duck.models_dir, spark.models_dir)
        results["duckdb"] |= run_stages(BATCH, duck, args.users, args.days)
        results["spark"] |= run_stages(BATCH, spark, args.users, args.days)
    finally:
        for settings in (duck, spark):
            try:
                open_store(settings).teardown()
            except Exception as exc:  # a stage failed before `apply`: nothing to tear down
                print(f"teardown of {settings.feast_project}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    events = shared["generate"]["events"]
    user_days = results["duckdb"]["prepare+features"]["user_days"]
    print(f"\n{args.users:,} users × {args.days} days: {events:,} events, {user_days:,} user-days")
    print(f"Spark: {spark.spark_master}, driver {spark.spark_driver_memory}")
    print(
        f"{'stage':<20}{'DuckDB s':>10}{'peak MB':>9}{'Spark s':>10}{'peak MB':>9}"
        f"{'Spark/DuckDB':>14}"
    )
    for stage in PER_ENGINE + BATCH:
        d, s = results["duckdb"][stage], results["spark"][stage]
        print(
            f"{stage:<20}{d['seconds']:>10.1f}{d['peak_tree_mb']:>9,.0f}"
            f"{s['seconds']:>10.1f}{s['peak_tree_mb']:>9,.0f}{s['seconds'] / d['seconds']:>13.1f}×"
        )
    for engine in ("duckdb", "spark"):
        r = results[engine]
        print(
            f"{engine}: prepare {r['prepare+features']['prepare_s']:.1f} s of prepare+features; "
            f"labels {r['labels+join']['labels_s']:.1f} s of labels+join "
            f"({r['labels+join']['rows']:,} rows); batch join {r['batch score']['join_s']:.1f} s "
            f"({r['batch score']['scored']:,} scored)"
        )


if __name__ == "__main__":
    main()
