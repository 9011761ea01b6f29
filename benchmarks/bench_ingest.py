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
import os
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pyarrow.compute as pc
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


def _seconds(message: str, started: float) -> float:
    took = time.perf_counter() - started
    print(f"… {message}: {took:.1f} s", file=sys.stderr, flush=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args()

    from feature_repo.store import open_store
    from ingestion.postgres_source import append_events, seed_portal

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
        started = time.perf_counter()
        users, history, yesterday = _world(args.users, args.days, settings.seed)
        _seconds(f"generated {history.num_rows + yesterday.num_rows:,} events", started)
        started = time.perf_counter()
        seed_portal(settings, url, users, history)
        seeded = _seconds(f"seeded {history.num_rows:,} events at the source", started)
        first = run_stages(("ingest", "validate", "prepare+features"), settings, args.users,
                           args.days)  # fmt: skip
        started = time.perf_counter()
        append_events(settings, url, yesterday, datetime.now(UTC))
        _seconds(f"inserted yesterday's {yesterday.num_rows:,} events at the source", started)
        night = run_stages(("night data",), settings, args.users, args.days)
    finally:
        try:
            open_store(settings).teardown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(args, history.num_rows, yesterday.num_rows, seeded, first, night)


def report(args, backfill: int, new: int, seeded: float, first: dict, night: dict) -> None:
    from runner import Totals

    totals = Totals(args.users, backfill, first["prepare+features"]["user_days"])
    print(f"\n{args.users:,} users × {args.days} days: {backfill:,} events at the source "
          f"(seeded in {seeded:.1f} s), then {new:,} more for yesterday")  # fmt: skip
    print(f"{'stage':<18}{'seconds':>9}{'peak RSS MB':>13}  detail")
    for stage, r in (first | night).items():
        rate = BENCHES[stage].rate(r, totals)
        print(f"{stage:<18}{r['seconds']:>9.1f}{r['peak_tree_mb']:>13,.0f}  {rate}")


if __name__ == "__main__":
    main()
