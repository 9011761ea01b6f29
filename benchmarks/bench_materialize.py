"""Issue 25's materialize benchmark: Feast's writer against ours, and Redis memory per user.

    python benchmarks/bench_materialize.py [--users 100000] [--days 120] [--writers feast,fast]

Builds the world (generate, validate, prepare+features, apply) in a directory of its own,
with a redis-server of its own (so its memory is the store's alone), then materializes it
once per writer, each in a fresh process on an emptied store: seconds, users/s, peak RSS
of the process, and the Redis memory the keys take per user. Everything is removed after.
"""

from __future__ import annotations

import argparse
import shutil

import redis
from runner import bench_settings, run_stages

PORT = 6394  # the benchmark's own redis-server


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--writers", default="feast,fast", help="comma list: feast, fast")
    args = parser.parse_args()
    from feature_repo.redis_server import kill_redis_server

    tmp, settings = bench_settings("bench-materialize-", redis_port=PORT)
    try:
        run_stages(("generate", "validate", "prepare+features", "apply"), settings,
                   args.users, args.days)  # fmt: skip
        client = redis.Redis.from_url(settings.redis_url)
        rows = []
        for writer in args.writers.split(","):
            client.flushdb()
            before = _used_memory(client)
            run = settings.model_copy(update={"materialize_writer": writer})
            result = run_stages(("materialize",), run, args.users, args.days)["materialize"]
            keys = client.dbsize()
            per_user = (_used_memory(client) - before) / max(keys, 1)
            rows.append((writer, result, keys, per_user))
    finally:
        kill_redis_server(tmp / "redis")
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nmaterialize, {args.users:,} users × {args.days} days")
    print(f"{'writer':<8}{'seconds':>9}{'users/s':>10}{'peak RSS MB':>13}{'keys':>10}"
          f"{'Redis B/user':>14}")  # fmt: skip
    for writer, r, keys, per_user in rows:
        print(f"{writer:<8}{r['seconds']:>9.1f}{keys / r['seconds']:>10,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}{keys:>10,}{per_user:>14,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
