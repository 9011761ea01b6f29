"""The nightly batch's benchmark: point-in-time join, scoring and writing for every active user.

python benchmarks/bench_batch.py [--users 100000] [--days 120]

Training and promotion run first (they make the production model); the figures that
count are the ``batch score`` stages: the active population as the nightly job scores it,
then every user (the lookback widened to the whole history): target under 30 s for
100,000 users on 2 cores.
"""

from runner import main

if __name__ == "__main__":
    main(
        (
            "generate",
            "validate",
            "prepare+features",
            "apply",
            "train",
            "promote",
            "batch score",
            "batch score (all)",
        )
    )
