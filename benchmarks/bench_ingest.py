"""Issue 15's benchmark: ingest from the portal's PostgreSQL, the backfill and a night.

    python benchmarks/bench_ingest.py [--users 100000] [--days 120]

Generates the world (``--users`` × ``--days``, ending yesterday) and seeds a database of
its own on ``CHURN_TEST_POSTGRES_URL`` (default: the local server) with all of it but
yesterday's events. Then, each stage in a fresh process (seconds, peak RSS):

1. ``ingest``: the first backfill, everything at the source;
2. the tables built once (validate, prepare and features over the whole history);
3. yesterday's events inserted at the source, and the night's data steps: ingest (only
   what is new, plus the look-back), validate, prepare and features for yesterday.

The database, the data directory and the Feast project are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq
from runner import BENCHES, bench_settings, run_stages

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/postgres"


def _world(users: int, days: int, seed: int):
    """The world's users and events as contract tables, events split before yesterday."""
    from core.contract import EVENT_COLUMNS, USER_COLUMNS, to_contract_table
    from ingestion.generate import generate_demo_data

    data = generate_demo_data(n_users=users, days=days, seed=seed)
    users_table = to_contract_table(data.users, USER_COLUMNS)
    events = to_contract_table(data.events, EVENT_COLUMNS)
    yesterday = datetime.combine(datetime.now(UTC).date() - timedelta(days=1),
                                 datetime.min.time(), UTC)  # fmt: skip
    late = pc.greater_equal(events["event_time"], yesterday)
    return users_table, events.filter(pc.invert(late)), events.filter(late)


def seed(url: str, users: int, days: int, out: Path) -> None:
    """The child that builds the world: seeds the source with all but yesterday's events,
    keeps yesterday's in ``out``, prints the counts. A child of its own, so the stages'
    processes, forked from the parent, do not start with the world's memory as their peak
    (``ru_maxrss`` carries over a fork and an exec)."""
    from core.settings import get_settings
    from ingestion.postgres_source import seed_portal

    settings = get_settings()
    started = time.perf_counter()
    users_table, history, yesterday = _world(users, days, settings.seed)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    seed_portal(settings, url, users_table, history)
    pq.write_table(yesterday, out)
    print(json.dumps({"generated_s": generated, "seeded_s": time.perf_counter() - started,
                      "history": history.num_rows, "yesterday": yesterday.num_rows}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed-into", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_into:
        return seed(args.seed_into, args.users, args.days, args.keep)

    from feature_repo.store import open_store
    from ingestion.postgres_source import append_events

    admin = os.environ.get("CHURN_TEST_POSTGRES_URL", DEFAULT_URL)
    name = f"churn_bench_{uuid.uuid4().hex[:8]}"
    url = urlsplit(admin)._replace(path=f"/{name}").geturl()
    tmp, settings = bench_settings("bench-ingest-")
    # The held-back day makes the newest event up to two days old: the gate allows three.
    settings = settings.model_copy(update={"source": url, "source_mark_column": "inserted_at",
                                           "max_event_age_hours": 72})  # fmt: skip
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        print(f"… generating and seeding {args.users:,} users × {args.days} days", file=sys.stderr)
        kept = tmp / "yesterday.parquet"
        child = subprocess.run(
            [sys.executable, __file__, "--seed-into", url, "--keep", str(kept),
             "--users", str(args.users), "--days", str(args.days)],
            env={**os.environ, **settings.as_env()}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            raise SystemExit(f"seeding failed:\n{child.stderr[-3000:]}")
        world = json.loads(child.stdout.strip().splitlines()[-1])
        first = run_stages(("ingest", "validate", "prepare+features"), settings, args.users,
                           args.days)  # fmt: skip
        append_events(settings, url, pq.read_table(kept), datetime.now(UTC))
        night = run_stages(("night data",), settings, args.users, args.days)
    finally:
        try:
            open_store(settings).teardown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(args, world, first, night)


def report(args, world: dict, first: dict, night: dict) -> None:
    from runner import Totals

    totals = Totals(args.users, world["history"], first["prepare+features"]["user_days"])
    print(f"\n{args.users:,} users × {args.days} days: {world['history']:,} events at the "
          f"source (generated in {world['generated_s']:.1f} s, seeded in "
          f"{world['seeded_s']:.1f} s), then {world['yesterday']:,} more for yesterday")  # fmt: skip
    print(f"{'stage':<18}{'seconds':>9}{'peak RSS MB':>13}  detail")
    for stage, r in (first | night).items():
        rate = BENCHES[stage].rate(r, totals)
        print(f"{stage:<18}{r['seconds']:>9.1f}{r['peak_tree_mb']:>13,.0f}  {rate}")


if __name__ == "__main__":
    main()
