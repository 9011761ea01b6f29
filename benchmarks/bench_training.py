"""Issue 3's benchmark: the point-in-time join through Feast and training, on the same data.

python benchmarks/bench_training.py [--users 100000] [--days 120]
"""

from runner import main

if __name__ == "__main__":
    main(("generate", "validate", "prepare+features", "apply", "labels+join", "train"))
