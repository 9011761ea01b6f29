"""Issue 25's benchmark: a portal of N users on one box, the backfill, training and a night.

    python benchmarks/bench_night.py [--users 100000] [--days 120] [--json out.json]
    python benchmarks/bench_night.py --compare 100k.json 300k.json 1m.json

A database of its own on ``CHURN_TEST_POSTGRES_URL`` (default: the local server) is seeded
with the demo world (``churn data generate --into-source``, which streams), and the last
day's events are held back. Then, each stage in a fresh process (seconds, peak RSS of the
stage's process tree):

1. the backfill: ingest everything at the source, validate, prepare, the full feature
   build, ``feast apply`` and the first materialize;
2. training: ``churn train``, then the newest model promoted without the gate;
3. the night after the held-back day, once its events are committed at the source:
   ingest → validate → prepare → features → materialize → batch → drift → outcomes →
   uplift → skew, as ``churn nightly`` runs them.

``--compare`` reads the JSON of runs at different sizes and prints each stage's seconds and
peak side by side with its growth exponent k (time ∝ users^k) between the smallest and the
largest run. The database, data directory and Feast project are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from runner import TreePeak, bench_settings, run_stages

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/postgres"
BACKFILL = ("ingest", "validate", "prepare", "features", "apply", "materialize")
TRAINING = ("train", "promote")
NIGHT = ("ingest", "validate", "prepare", "features", "materialize", "batch", "drift",
         "outcomes", "uplift", "skew")  # fmt: skip
CHURN = str(Path(sys.executable).with_name("churn"))


def _seed(settings, url: str, users: int, days: int) -> dict:
    """``churn data generate --into-source`` in a child: its seconds and peak."""
    env = {**os.environ, **settings.as_env(), "CHURN_SOURCE": url}
    start = time.perf_counter()
    with TreePeak() as peak:
        child = subprocess.run([CHURN, "data", "generate", "--users", str(users), "--days",
                                str(days), "--into-source"], env=env, capture_output=True,
                               text=True, check=False)  # fmt: skip
    if child.returncode != 0:
        raise SystemExit(f"seeding failed:\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
    return {"seconds": time.perf_counter() - start, "peak_tree_mb": peak.peak_kb / 1024}


def _hold_back_last_day(url: str) -> int:
    """Move the newest day's events aside: the night's, committed later."""
    with psycopg.connect(url, autocommit=True) as conn:
        newest = conn.execute("SELECT date_trunc('day', max(event_time)) FROM events").fetchone()
        conn.execute("CREATE TABLE held_back AS SELECT * FROM events WHERE event_time >= %s",
                     newest)  # fmt: skip
        conn.execute("DELETE FROM events WHERE event_time >= %s", newest)
        return conn.execute("SELECT count(*) FROM held_back").fetchone()[0]


def _commit_held_back(url: str) -> None:
    """The held-back day's events arrive at the source now, as a night finds them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE held_back SET inserted_at = now()")
        conn.execute("INSERT INTO events SELECT * FROM held_back")


def _world(args: argparse.Namespace):  # -> (state, settings, fresh)
    """A new world (a database and a directory of its own), or the one ``--resume`` names."""
    if args.resume:
        state = json.loads(args.resume.read_text())
        from core.settings import get_settings

        os.environ.update(state["env"])
        return state, get_settings(), False
    admin = os.environ.get("CHURN_TEST_POSTGRES_URL", DEFAULT_URL)
    name = f"churn_bench_{uuid.uuid4().hex[:8]}"
    url = urlsplit(admin)._replace(path=f"/{name}").geturl()
    tmp, settings = bench_settings("bench-night-")
    # The held-back day makes the newest event up to two days old: the gate allows three.
    settings = settings.model_copy(update={"source": url, "source_mark_column": "inserted_at",
                                           "max_event_age_hours": 72})  # fmt: skip
    state = {"admin": admin, "database": name, "url": url, "tmp": str(tmp),
             "env": settings.as_env(), "out": {"users": args.users, "days": args.days}}  # fmt: skip
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return state, settings, True


def _remove(state: dict, settings) -> None:
    from feature_repo.store import open_store

    try:
        open_store(settings).teardown()
    finally:
        shutil.rmtree(state["tmp"], ignore_errors=True)
        with psycopg.connect(state["admin"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{state["database"]}" WITH (FORCE)')


def run(args: argparse.Namespace) -> dict:
    """The phases asked for (the backfill, training, the night); every stage's figures.

    With ``--keep``, the world stays (its state in that file) for ``--resume``; remove it
    with ``--remove`` on that file."""
    state, settings, fresh = _world(args)
    out, url = state["out"], state["url"]
    users, days = out["users"], out["days"]
    phases = args.phases.split(",")
    try:
        if fresh:
            print(f"… seeding {users:,} users × {days} days", file=sys.stderr)
            out["seed"] = _seed(settings, url, users, days)
            out["held_back_events"] = _hold_back_last_day(url)
        if "backfill" in phases:
            out["backfill"] = run_stages(BACKFILL, settings, users, days)
        if "training" in phases:
            out["training"] = run_stages(TRAINING, settings, users, days)
        if "night" in phases:
            _commit_held_back(url)
            stages = tuple(f"night {s}" for s in NIGHT)
            out["night"] = run_stages(stages, settings, users, days)
    finally:
        if args.keep:  # kept even when a phase failed: fix, then --resume
            args.keep.write_text(json.dumps(state, indent=1))
        else:
            try:
                _remove(state, settings)
            except Exception as exc:  # the figures measured outlive a failed clean-up
                print(f"could not remove the world ({state['tmp']}, database "
                      f"{state['database']}): {type(exc).__name__}: {exc}",
                      file=sys.stderr)  # fmt: skip
    return out


def _rows(out: dict) -> list[tuple[str, float, float, float]]:
    """(phase stage, seconds, process seconds, peak MB) for every stage, with the phases'
    totals; the process's seconds add its start-up (nan in runs made before they were kept)."""
    seed = out["seed"]
    rows = [("seed (generate --into-source)", seed["seconds"], seed["seconds"],
             seed["peak_tree_mb"])]  # fmt: skip
    for phase in ("backfill", "training", "night"):
        stages = out.get(phase, {})
        if not stages:
            continue
        for stage, r in stages.items():
            rows.append((f"{phase}: {stage.removeprefix('night ')}", r["seconds"],
                         r.get("wall_seconds", math.nan), r["peak_tree_mb"]))  # fmt: skip
        rows.append((f"{phase} in all", sum(r["seconds"] for r in stages.values()),
                     sum(r.get("wall_seconds", math.nan) for r in stages.values()),
                     max(r["peak_tree_mb"] for r in stages.values())))  # fmt: skip
    return rows


def report(out: dict) -> None:
    print(f"\n{out['users']:,} users × {out['days']} days "
          f"({out['held_back_events']:,} events in the night)")  # fmt: skip
    print(f"{'stage':<34}{'seconds':>10}{'process':>10}{'peak MB':>10}")
    for stage, seconds, wall, peak in _rows(out):
        print(f"{stage:<34}{seconds:>10.1f}{wall:>10.1f}{peak:>10,.0f}")


def compare(paths: list[Path]) -> None:
    """Seconds and peaks side by side, and the growth exponent between the extremes."""
    runs = sorted((json.loads(p.read_text()) for p in paths), key=lambda r: r["users"])
    table = [dict((s, (t, m)) for s, t, _, m in _rows(r)) for r in runs]
    head = "".join(f"{r['users']:>12,} users" for r in runs)
    print(f"{'stage':<34}{head}{'k':>8}")
    for stage in table[0]:
        cells = "".join(f"{t[stage][0]:>8.1f} s {t[stage][1]:>5,.0f}M" for t in table)
        small, large = table[0][stage][0], table[-1][stage][0]
        ratio = runs[-1]["users"] / runs[0]["users"]
        k = math.log(large / small) / math.log(ratio) if small > 0 and ratio > 1 else float("nan")
        print(f"{stage:<34}{cells}{k:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--compare", type=Path, nargs="+", help="runs' JSON files to compare")
    parser.add_argument(
        "--phases",
        default="backfill,training,night",
        help="comma list of backfill, training, night",
    )
    parser.add_argument("--keep", type=Path, help="keep the world; its state goes in this file")
    parser.add_argument("--resume", type=Path, help="run on the world a --keep file names")
    parser.add_argument("--remove", type=Path, help="remove the world a --keep file names")
    args = parser.parse_args()
    if args.compare:
        return compare(args.compare)
    if args.remove:
        state = json.loads(args.remove.read_text())
        os.environ.update(state["env"])
        from core.settings import get_settings

        return _remove(state, get_settings())
    out = run(args)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    report(out)


if __name__ == "__main__":
    main()
