"""Issue 2's benchmark: generate, validate, prepare+features, the daily run, Feast.

python benchmarks/bench_features.py [--users 100000] [--days 120]
"""

from runner import main

if __name__ == "__main__":
    main(("generate", "validate", "prepare+features", "daily run", "apply", "materialize"))
