"""Benchmark runner: each stage in a fresh process, so its peak RSS is its own.

``bench_features.py``, ``bench_training.py`` and ``bench_batch.py`` name the stages
they time; this module runs them under a temporary data dir and a Feast project of
their own, removes both, and prints one table. A stage here is one or more of the
pipeline's stages (``churn.stages``: the functions the ``churn`` commands, the nightly and
the demo run), and the figures it reports.
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churn.stages import STAGES as PIPELINE
from churn.stages import StageFn, StageInputs
from core.timeline import day_of

RUNNER = str(Path(__file__).resolve())


@dataclass(frozen=True)
class Measured:
    """What one benchmark process ran: each stage's result and seconds, and the progress
    marks (times) its stages reported."""

    results: dict[str, Any]
    seconds: dict[str, float]
    marks: list[float]


@dataclass(frozen=True)
class Totals:
    """The run's sizes, which the throughput lines divide by."""

    users: int
    events: int
    user_days: int


@dataclass(frozen=True)
class Bench:
    """A measured stage: pipeline stages (``churn.stages`` names, or ``PARTS``) run in one
    process, the figures it reports and its line of the table."""

    stages: tuple[str, ...]
    figures: Callable[[Measured], dict] = lambda m: {}
    rate: Callable[[dict, Totals], str] = lambda r, t: ""
    newest_day: bool = False  # only the newest day, as the nightly runs: `--as-of`, T = day + 1
    everyone: bool = False  # every user counts as active: the whole table scored
    yesterday: bool = False  # the night after yesterday (the day the world's data ends)


def _scored(m: Measured) -> dict:
    result = m.results["batch"]
    return {"scored": result.scored, "skipped": result.skipped, "high_risk": result.high_risk,
            "join_s": m.marks[-1] - m.marks[0]}  # fmt: skip


def _scored_rate(r: dict, t: Totals) -> str:
    return (f"{r['scored'] / r['seconds']:,.0f} users/s ({r['scored']:,} scored, "
            f"{r['skipped']:,} skipped, {r['high_risk']:,} high-risk; join {r['join_s']:.1f} s)")  # fmt: skip


def _built(m: Measured) -> dict:
    return {"user_days": m.results["prepare"].rows, "feature_rows": m.results["features"].rows,
            "prepare_s": m.seconds["prepare"]}  # fmt: skip


def _joined(m: Measured) -> dict:
    labels_s, joined = m.results["labels+join"]
    return {"rows": len(joined.frame), "labels_s": labels_s}


def _landed(m: Measured) -> dict:
    landed = m.results["ingest"]
    return {"events": landed.events, "already_stored": landed.already_stored,
            "days": len(landed.days), "users": landed.users}  # fmt: skip


def _landed_rate(r: dict, t: Totals) -> str:
    return (f"{r['events'] / r['seconds']:,.0f} events/s ({r['events']:,} new over {r['days']} "
            f"days, {r['already_stored']:,} already stored)")  # fmt: skip


def _night(m: Measured) -> dict:
    return _landed(m) | {part: m.seconds[part] for part in m.seconds}


def _trained(m: Measured) -> dict:
    result = m.results["train"]
    return {"rows": sum(result.rows.values()), "pr_auc": result.metrics[result.best]["pr_auc"]}


BENCHES: dict[str, Bench] = {
    "generate": Bench(("generate",), lambda m: {"events": m.results["generate"].events},
                      lambda r, t: f"{t.events / r['seconds']:,.0f} events/s"),
    "validate": Bench(("validate",), lambda m: {"events": m.results["validate"].stats["events"]},
                      lambda r, t: f"{t.events / r['seconds']:,.0f} events/s"),
    "prepare+features": Bench(("prepare", "features"), _built, lambda r, t: (
        f"{t.user_days / r['seconds']:,.0f} user-days/s (prepare {r['prepare_s']:.1f} s)")),
    "daily run": Bench(("prepare", "features"), _built,
                       lambda r, t: f"one day: {r['feature_rows']:,} feature rows", newest_day=True),
    "apply": Bench(("apply",)),
    "ingest": Bench(("ingest",), _landed, _landed_rate),
    "night data": Bench(("ingest", "validate", "prepare", "features"), _night, lambda r, t: (
        f"{r['events']:,} new events; ingest {r['ingest']:.1f} s, validate {r['validate']:.1f} s, "
        f"prepare {r['prepare']:.1f} s, features {r['features']:.1f} s"), yesterday=True),
    "materialize": Bench(("materialize",), rate=lambda r, t: (
        f"{t.users / r['seconds']:,.0f} users/s (newest row per user)")),
    "labels+join": Bench(("labels+join",), _joined, lambda r, t: (
        f"{r['rows'] / (r['seconds'] - r['labels_s']):,.0f} rows/s joined ({r['rows']:,} rows; "
        f"labels {r['labels_s']:.1f} s)")),
    "train": Bench(("train",), _trained,
                   lambda r, t: f"{r['rows']:,} rows, 2 models, best PR-AUC {r['pr_auc']:.3f}"),
    "promote": Bench(("force",)),
    "batch score": Bench(("batch",), _scored, _scored_rate, newest_day=True),
    "batch score (all)": Bench(("batch",), _scored, _scored_rate, newest_day=True, everyone=True),
}  # fmt: skip
# The backfill's steps one by one, and the night's stages on the night after yesterday
# (benchmarks/bench_night.py).
BENCHES |= {"prepare": Bench(("prepare",)), "features": Bench(("features",))}
BENCHES |= {f"night {stage}": Bench((stage,), yesterday=True) for stage in (
    "ingest", "validate", "prepare", "features", "materialize", "batch", "drift", "outcomes",
    "uplift", "skew")}  # fmt: skip
STAGES = tuple(BENCHES)


def _labels_join() -> StageFn:
    from training.dataset import training_set
    from training.labels import build_labels

    def run(i: StageInputs) -> tuple[float, Any]:
        start = time.perf_counter()
        labels = build_labels(i.settings)
        return time.perf_counter() - start, training_set(i.settings, labels)

    return run


def _force() -> StageFn:
    from training.promote import force, latest_candidate

    return lambda i: force(i.settings, latest_candidate(i.settings), "benchmark")


# The first half of `churn train` (labels, then Feast's point-in-time join), and promotion
# without the gate: a benchmark needs a production model to score with, not the gate's
# verdict on it.
PARTS: dict[str, Callable[[], StageFn]] = {"labels+join": _labels_join, "force": _force}


def _load(part: str) -> StageFn:
    """The in-process function of a pipeline stage, or of one of the runner's own parts."""
    return PIPELINE[part].load() if part in PIPELINE else PARTS[part]()


def bench_inputs(bench: Bench, users: int, days: int) -> StageInputs:
    """The inputs of ``bench``'s run: settings from the environment, the clock's now, or the
    newest prepared day's night."""
    from core import partitions
    from core.settings import get_settings

    settings = get_settings()
    if bench.everyone:
        settings = settings.model_copy(update={"active_lookback_days": days})
    inputs = StageInputs(settings, datetime.now(UTC), users=users, days=days)
    if bench.yesterday:
        night = StageInputs.night(settings, day_of(datetime.now(UTC)))
        inputs = replace(inputs, now=night.now, day=night.day)
    if bench.newest_day:
        night = StageInputs.night(settings, partitions.partition_days(settings.user_daily_path)[-1])
        inputs = replace(inputs, now=night.now, day=night.day)
    return inputs


def run_stage(name: str, users: int, days: int) -> dict:
    """Run benchmark ``name`` in this process; its figures, seconds and peak RSS."""
    bench = BENCHES[name]
    marks: list[float] = []
    inputs = bench_inputs(bench, users, days)
    inputs = replace(inputs, progress=lambda *_: marks.append(time.perf_counter()))
    runs = [(part, _load(part)) for part in bench.stages]  # their imports are not timed
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for part, run in runs:
        start = time.perf_counter()
        results[part] = run(inputs)
        seconds[part] = time.perf_counter() - start
    out = bench.figures(Measured(results, seconds, marks))
    out["seconds"] = sum(seconds.values())
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


def bench_settings(prefix: str, redis_port: int | None = None):  # -> tuple[Path, Settings]
    """A temporary directory and settings of a benchmark's own: data, artifacts, Feast
    project (the caller tears the project down and removes the directory). With
    ``redis_port``, the online store is a redis-server of the benchmark's own, started on
    that port with its data in the directory (the caller shuts it down), never the
    machine's."""
    from core.settings import get_settings
    from feature_repo.redis_server import ensure_redis, start_redis_server

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    settings = get_settings(
        data_dir=tmp / "data",
        artifacts_dir=tmp / "artifacts",
        feast_project=f"bench_{uuid.uuid4().hex[:8]}",
    )
    if redis_port is None:
        return tmp, ensure_redis(settings)
    url = start_redis_server(redis_port, tmp / "redis", persist=False)
    return tmp, settings.model_copy(update={"redis_url": url})


def run_stages(stages: tuple[str, ...], settings, users: int, days: int) -> dict[str, dict]:
    """Run ``stages`` in order, each in a fresh process with ``settings``; their figures,
    with ``wall_seconds``: the process's, start-up and imports included, as a command pays."""
    results: dict[str, dict] = {}
    for stage in stages:
        print(f"… {stage} ({settings.engine})", file=sys.stderr, flush=True)
        start = time.perf_counter()
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
        results[stage]["wall_seconds"] = time.perf_counter() - start
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

    print_table(results, args.users, args.days)


def print_table(results: dict[str, dict], users: int, days: int) -> None:
    """One line per stage: seconds, peak RSS and its throughput."""
    totals = Totals(users, results["generate"]["events"], results["prepare+features"]["user_days"])
    print(f"\n{users:,} users × {days} days: {totals.events:,} events, "
          f"{totals.user_days:,} user-days")  # fmt: skip
    print(f"{'stage':<18}{'seconds':>9}{'peak RSS MB':>13}  throughput")
    for stage, r in results.items():
        rate = BENCHES[stage].rate(r, totals)
        print(f"{stage:<18}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13,.0f}  {rate}")


if __name__ == "__main__":
    main()
