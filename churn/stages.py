"""The stages of the pipeline, listed once: each is a ``churn`` command and the function it runs.

``churn nightly`` runs ``NIGHT`` as those commands, each in a process of its own; the demo
runs ``DEMO`` in-process, with progress; ``benchmarks/runner.py`` runs any of them in a
fresh process to measure it. A stage's function takes its inputs explicitly
(``StageInputs``) and imports its package only when loaded, so the nightly's own process,
which only starts commands, never loads Feast or scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from core.timeline import midnight, stamp_of
from monitor.exit_codes import DRIFT, ESTIMATE, SKEW

if TYPE_CHECKING:  # pandera, which the rules import, costs every command's start-up
    from core.push import Sample
    from ingestion.raw_store import Landed
    from ingestion.rules import ValidationReport

StageFn = Callable[["StageInputs"], Any]


@dataclass(frozen=True)
class StageInputs:
    """What every stage runs with: the settings, the run's clock and, for a night, its day."""

    settings: Settings
    now: datetime  # the run's clock: the freshness gate, materialize's end, training's "now"
    day: date | None = None  # rebuild only this day (a night's); None: the whole history
    users: int = 0  # generate: how many users over how many days, ending before ``now``
    days: int = 0
    scenario: str = "baseline"  # generate: the generator's world
    portal: tuple[Path, Path] | None = None  # ingest: the portal's users and events files
    progress: Callable[[int, int], None] | None = None  # stages that count steps report here
    as_of: date | None = None  # the batch (T's date) a monitor checks; None: the newest
    sample: int | None = None  # skew: users compared (None: CHURN_SKEW_SAMPLE)
    seed: int | None = None  # skew: their draw (None: CHURN_SEED)

    @classmethod
    def night(
        cls, settings: Settings, day: date, portal: tuple[Path, Path] | None = None
    ) -> StageInputs:
        """The night after ``day``: every dated stage reads and writes ``day``, the run
        time is ``day`` + 1 00:00 UTC (day D's features are stamped D+1 00:00), whenever
        the night actually runs, and its monitors check the batch of that T."""
        return cls(settings, stamp_of(day), day, portal=portal, as_of=stamp_of(day).date())

    @property
    def run_time(self) -> datetime:
        """The batch's T: 00:00 UTC of the run's day."""
        return midnight(self.now)


@dataclass(frozen=True)
class Check:
    """What a monitoring stage found: its report, the file it wrote (None: none), the figures
    its stage pushes under its job, and the exit code its command ends with."""

    report: Any
    path: Path | None = None
    samples: list[Sample] = field(default_factory=list)
    exit_code: int = 0
    checked: Any = None  # the estimate: past nights set beside their realized figures

    @property
    def chart(self) -> Path | None:
        """The chart written beside the report (drift, estimate, uplift)."""
        return self.path.with_suffix(".png") if self.path is not None else None


@dataclass(frozen=True)
class Stage:
    """One stage: its name (the job its command reports as, ``churn_<name>``, where it
    pushes one), its ``churn`` command, and ``load``, which imports its package and
    returns the function the command calls."""

    name: str
    command: tuple[str, ...]
    title: str  # what progress output calls it
    load: Callable[[], StageFn]
    options: Callable[[StageInputs], list[str]] = lambda inputs: []
    findings: Mapping[int, str] = field(default_factory=dict)  # exit codes that report, not fail
    counts_days: bool = False  # its progress counts the ``days`` of the inputs

    @property
    def job(self) -> str:
        """The Pushgateway job its command pushes its figures under (``monitor.jobs.job_run``
        takes ``name``): imported here, so the night's light process loads no Prometheus."""
        from core.push import job_name

        return job_name(self.name)

    def argv(self, inputs: StageInputs) -> list[str]:
        """The ``churn`` arguments that run this stage on ``inputs``."""
        return [*self.command, *self.options(inputs)]

    def run(self, inputs: StageInputs) -> Any:
        """Run the stage in this process; its result (a report, a table's summary, ...). A
        monitoring stage's figures (``Check.samples``) are pushed under its job, wherever it
        runs: its command, a test, a benchmark."""
        result = self.load()(inputs)
        if isinstance(result, Check) and result.samples:
            from core.push import push

            push(inputs.settings, self.job, result.samples)
        return result


class ValidationFailed(Exception):
    """The raw data failed a validation gate (``churn data validate`` exits 1);
    ``report`` says which."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__("the data failed validation")
        self.report = report


def _day_option(inputs: StageInputs) -> list[str]:
    return ["--day", inputs.day.isoformat()] if inputs.day else []


def _generate() -> StageFn:
    from ingestion.generate import DemoWorld, WrittenWorld, write_demo_world

    def run(i: StageInputs) -> WrittenWorld:
        world = DemoWorld(n_users=i.users, days=i.days, seed=i.settings.seed,
                          start=_first_day(i), scenario=i.scenario)  # type: ignore[arg-type]  # fmt: skip
        return write_demo_world(world, i.settings, i.progress)  # streamed: a day at a time

    return run


def _first_day(inputs: StageInputs) -> date:
    """Generated data's first day: ``days`` ending the day before ``now``."""
    return inputs.now.astimezone(UTC).date() - timedelta(days=inputs.days)


def _ingest() -> StageFn:
    from ingestion.ingest import ingest_files
    from ingestion.sources import ingest_from_source

    def run(i: StageInputs) -> Landed:
        if i.portal is not None:
            return ingest_files(*i.portal, i.settings)
        return ingest_from_source(i.settings, now=i.now, progress=i.progress)

    return run


def _ingest_options(inputs: StageInputs) -> list[str]:
    """A full export's files when given; else nothing: the command reads CHURN_SOURCE."""
    if inputs.portal is None:
        return []
    users, events = inputs.portal
    return ["--users-file", str(users), "--events-file", str(events)]


def _validate() -> StageFn:
    from ingestion.validate import run_validation

    def run(i: StageInputs) -> ValidationReport:
        report = run_validation(i.settings, now=i.now)
        if not report.passed:
            raise ValidationFailed(report)
        return report

    return run


def _prepare() -> StageFn:
    from ingestion.prepare import build_days_through, build_user_daily

    def run(i: StageInputs) -> Any:
        if i.day is None:
            return build_user_daily(i.settings, now=i.now, progress=i.progress)
        return build_days_through(i.settings, i.day, now=i.now, progress=i.progress)

    return run


def _features() -> StageFn:
    from ingestion.rolling_features import build_features_through, build_rolling_features

    def run(i: StageInputs) -> Any:
        if i.day is None:
            return build_rolling_features(i.settings, progress=i.progress)
        return build_features_through(i.settings, i.day, progress=i.progress)

    return run


def _apply() -> StageFn:
    from feature_repo.feast_cli import apply_definitions

    return lambda i: apply_definitions(i.settings)


def _materialize() -> StageFn:
    from core.priority import lower_priority
    from feature_repo.store import materialize

    def run(i: StageInputs) -> Any:
        lower_priority(i.settings.materialize_niceness)  # the API's requests first
        return materialize(i.settings, end=i.now, progress=i.progress)

    return run


def _train() -> StageFn:
    from training.train import train_models

    return lambda i: train_models(i.settings, now=i.now)


def _promote() -> StageFn:
    from training.promote import promote

    return lambda i: promote(i.settings, now=i.now)  # the newest run's best, as the command


def _batch() -> StageFn:
    from batch.job import score_population

    return lambda i: score_population(i.settings, i.run_time, progress=i.progress)


def _estimate() -> StageFn:
    from monitor.estimate import (
        EXIT_CODES,
        check_against_realized,
        estimate_report,
        estimate_samples,
        write_estimate_report,
    )

    def run(i: StageInputs) -> Check:
        report = estimate_report(i.settings, i.as_of)
        path = write_estimate_report(report, i.settings)
        checked = check_against_realized(i.settings)
        return Check(report, path, estimate_samples(report, checked),
                     EXIT_CODES[report.status], checked)  # fmt: skip

    return run


def _drift() -> StageFn:
    from monitor.drift import EXIT_CODES, drift_report, drift_samples, write_drift_report

    def run(i: StageInputs) -> Check:
        report = drift_report(i.settings, i.as_of)
        path = write_drift_report(report, i.settings)
        return Check(report, path, drift_samples(report), EXIT_CODES[report.status])

    return run


def _outcomes() -> StageFn:
    from monitor.outcomes import outcome_samples, realized_outcomes

    def run(i: StageInputs) -> Check:
        report = realized_outcomes(i.settings)
        return Check(report, report.history_path, outcome_samples(report))

    return run


def _uplift() -> StageFn:
    from monitor.uplift import realized_uplift, uplift_samples, write_uplift_report

    def run(i: StageInputs) -> Check:
        report = realized_uplift(i.settings)
        return Check(report, write_uplift_report(report, i.settings), uplift_samples(report))

    return run


def _skew() -> StageFn:
    from monitor.skew import skew_report, skew_samples, write_skew_report

    def run(i: StageInputs) -> Check:
        report = skew_report(i.settings, i.sample, i.seed)
        path = write_skew_report(report, i.settings)
        mismatch = bool(report.cells_mismatched or report.users_missing_online)
        return Check(report, path, skew_samples(report), SKEW["mismatch"] if mismatch else 0)

    return run


def _retrain() -> StageFn:
    from monitor.retrain import retrain_if_needed

    return lambda i: retrain_if_needed(i.settings, now=i.now)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("generate", ("data", "generate"), "generate", _generate, counts_days=True,
          options=lambda i: ["--users", str(i.users), "--days", str(i.days), "--start",
                             _first_day(i).isoformat(), "--scenario", i.scenario]),
    Stage("ingest", ("data", "ingest"), "ingest", _ingest, _ingest_options),
    Stage("validate", ("data", "validate"), "validate", _validate),
    Stage("prepare", ("data", "prepare"), "prepare user_daily", _prepare, _day_option),
    Stage("features", ("features", "build"), "build features", _features, _day_option),
    Stage("apply", ("features", "apply"), "feast apply", _apply),
    Stage("materialize", ("features", "materialize"), "feast materialize", _materialize,
          lambda i: ["--end", f"{i.now.astimezone(UTC):%Y-%m-%dT%H:%M:%S}"]),
    Stage("train", ("train",), "train", _train),
    Stage("promote", ("promote",), "promote", _promote),
    Stage("batch", ("batch", "score"), "batch score", _batch,
          lambda i: ["--as-of", i.run_time.date().isoformat()]),
    Stage("estimate", ("monitor", "estimate"), "estimate", _estimate,
          lambda i: ["--as-of", i.run_time.date().isoformat()],
          findings={ESTIMATE["low"]: "estimated PR-AUC skill under the floor",
                    ESTIMATE["alert"]: "estimated PR-AUC skill under the floor for CHURN_ESTIMATE_ALERT_NIGHTS nights"}),
    Stage("drift", ("monitor", "drift"), "drift", _drift,
          findings={DRIFT["warn"]: "drift warning", DRIFT["alert"]: "drift alert"}),
    Stage("outcomes", ("monitor", "outcomes"), "outcomes", _outcomes),
    Stage("uplift", ("monitor", "uplift"), "uplift", _uplift),
    Stage("skew", ("monitor", "skew"), "skew", _skew, findings={SKEW["mismatch"]: "online/offline mismatch"}),
    Stage("retrain", ("monitor", "retrain-if-needed"), "retrain if needed", _retrain),
)}  # fmt: skip

# The night, in order: the day just ended through the gates into the features and Redis,
# scored, monitored, and the model retrained when the evidence says so. Each stage reads
# what the one before wrote, so the night stops at the first failure.
NIGHT = ("validate", "prepare", "features", "materialize", "batch", "estimate", "drift", "outcomes",
         "uplift", "skew", "retrain")  # fmt: skip
# The demo's set-up, up to the gate (then it serves).
DEMO = ("generate", "validate", "prepare", "features", "apply", "materialize", "train", "promote")


def night(portal: tuple[Path, Path] | None = None, source: bool = False) -> list[Stage]:
    """The night's stages: with the portal's export, or a configured source (CHURN_SOURCE),
    ingesting comes first."""
    return [STAGES[name] for name in (("ingest",) if portal or source else ()) + NIGHT]
