"""Job runs as metrics: when each job last succeeded or failed, and how long it took.

Dashboards show the last successful run and the duration of every job, and an alert
fires when a nightly job has not succeeded for 26 h; both read these gauges, pushed to
the Pushgateway under ``job="churn_<name>"`` whether the job runs from ``churn
nightly``, a Kubernetes CronJob or by hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from core import partitions
from core.push import Sample, job_name, push
from core.settings import Settings
from core.timeline import stamp_of

if TYPE_CHECKING:
    from ingestion.raw_store import (
        Landed,  # pandera, which the rules import, costs every command's start-up
    )
    from ingestion.rules import ValidationReport

SUCCESS = "churn_job_last_success_timestamp_seconds"
FAILURE = "churn_job_last_failure_timestamp_seconds"
DURATION = "churn_job_duration_seconds"
FRESHNESS = "churn_online_features_newest_timestamp_seconds"
RUN_GROUP = {"kind": "job_run"}


def run_samples(succeeded: bool, started: float, finished: float) -> list[Sample]:
    """The gauges of one run: success time and duration, or failure time."""
    if not succeeded:
        return [Sample(FAILURE, finished, "When the job last failed (Unix time)")]
    return [
        Sample(SUCCESS, finished, "When the job last succeeded (Unix time)"),
        Sample(DURATION, finished - started, "How long the job's last successful run took"),
    ]


@contextmanager
def job_run(settings: Settings, name: str) -> Iterator[None]:
    """Time the block as a run of job ``name``; push the outcome when it ends.

    The gauges live in a Pushgateway group of their own, so the job's own figures (the
    batch's counts, the drift's PSI) pushed inside the block leave them alone, and a
    failure keeps the last success visible. An exception is recorded as a failure and
    re-raised.
    """
    started = time.time()
    try:
        yield
    except BaseException:
        push_run(settings, name, run_samples(False, started, time.time()))
        raise
    push_run(settings, name, run_samples(True, started, time.time()))


def push_run(settings: Settings, name: str, samples: list[Sample]) -> None:
    """Push a run's gauges (``run_samples``) for job ``churn_<name>``.

    A group of its own (``kind="job_run"``): the job's figures are pushed whole, which
    replaces their group, and must not take the last failure or success with them.
    """
    push(settings, job_name(name), samples, replace=False, grouping=RUN_GROUP)


def online_freshness(settings: Settings, until: datetime) -> Sample:
    """The newest feature timestamp a materialization up to ``until`` loaded into Redis.

    Day D's row is stamped D+1 00:00 UTC; materializing later does not make old features
    fresh, so the stale-features alert reads this, not the time of the run.
    """
    days = partitions.partition_days(settings.features_path)
    newest = stamp_of(days[-1]) if days else None
    stamp = min(newest, until) if newest else None
    value = stamp.timestamp() if stamp else 0.0
    return Sample(FRESHNESS, value, "Newest feature timestamp loaded into the online store")


def ingest_samples(landed: Landed) -> list[Sample]:
    """What the last ingest added: a night with nothing new shows 0 new events."""
    return [
        Sample("churn_ingest_events_new", landed.events, "Events the last ingest stored"),
        Sample("churn_ingest_events_already_stored", landed.already_stored,
               "Events the last ingest read that were already stored (look-back, re-runs)"),
        Sample("churn_ingest_users_changed", landed.users,
               "Users the last ingest added or changed"),
        Sample("churn_ingest_days_touched", len(landed.days),
               "Days the last ingest added events to (rebuilt by the night)"),
    ]  # fmt: skip


def validation_samples(report: ValidationReport) -> list[Sample]:
    """Rows breaking each rule, by severity (warnings let the run pass), and the rows dropped."""
    samples = [
        Sample(
            "churn_validation_rule_rows",
            f.count,
            "Rows breaking a validation rule in the last run (severity warn lets it pass)",
            {"rule": f.rule, "severity": severity},
        )
        for severity, failures in (("error", report.failures), ("warn", report.warnings))
        for f in failures
    ]
    samples.append(
        Sample(
            "churn_validation_warnings",
            len(report.warnings),
            "Relaxed rules broken (or repeats dropped) in the last validation run",
        )
    )
    samples.append(
        Sample(
            "churn_validation_dropped_events",
            report.stats.get("dropped_duplicate_events", 0),
            "Repeated events dropped by CHURN_DROP_DUPLICATE_EVENTS in the last run",
        )
    )
    return samples
