"""``churn monitor estimate``: tonight's performance, estimated before any label exists.

Realized figures (``monitor.outcomes``) arrive one horizon after a list is made. The models'
probabilities are calibrated, so the expected confusion matrix at every threshold follows
from the probabilities alone: confidence-based performance estimation (CBPE, as NannyML
names it, ``monitor.cbpe``): exact means of p for churn rate and precision@K, and
``CHURN_ESTIMATE_DRAWS`` label draws seeded with ``CHURN_SEED`` for PR-AUC, its skill and
ROC-AUC, each with its 5-95 % band. Only as good as the calibration, which ``churn monitor
outcomes`` checks once the labels arrive.

The population is the one ``monitor.outcomes`` will judge: the night's scored users less
the contacted arm (``uncontacted``), so estimate and realized compare like with like. The
list as delivered (top K and the high band, ``batch.high_risk``) gets its expected hit rate.

Outputs under ``monitoring_dir/estimate/`` (``Settings.estimate_dir``): ``as_of=<date>.json``,
``as_of=<date>.png`` (estimate beside realized, night by night) and ``history.jsonl``
(``core.history``; the newest line of a date counts), as drift writes its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from batch.high_risk import select_high_risk
from batch.outputs import (
    PREDICTIONS_FILE,
    batch_dates,
    batch_dir,
    read_batch_file,
    read_predictions,
)
from core.atomic import write_json
from core.history import append_record, read_records
from core.push import Sample
from core.settings import Settings
from core.timeline import start_of
from feature_repo.spec import ENTITY_KEY
from monitor.cbpe import Expected, expected_metrics
from monitor.charts import estimate_lines
from monitor.exit_codes import ESTIMATE
from monitor.outcomes import read_history as read_outcomes
from monitor.outcomes import uncontacted
from served.arms import read_assignments

# `churn monitor estimate` exits with these; the night goes on (churn.stages findings).
EXIT_CODES = ESTIMATE
STATUS_STYLES = {"ok": "green", "low": "yellow", "alert": "bold red"}
# The figures both histories hold, compared night by night (outcomes has no list precision).
COMPARED = ("precision_at_k", "pr_auc", "pr_auc_skill", "roc_auc")
CHECKED_GAUGES = {
    "precision_at_k": "churn_estimate_checked_precision_at_k",
    "pr_auc": "churn_estimate_checked_pr_auc",
    "pr_auc_skill": "churn_estimate_checked_pr_auc_skill",
    "roc_auc": "churn_estimate_checked_roc_auc",
}


@dataclass(frozen=True)
class EstimateReport:
    """The night's estimate, and how long the estimated skill has stayed under the floor."""

    as_of: date
    model_version: str
    expected: Expected
    contacted_left_out: int
    list_size: int  # the list as delivered: top K and the high band
    list_precision: float  # its expected share of churners
    floor: float  # CHURN_REALIZED_PR_AUC_SKILL_FLOOR
    nights_under_floor: int  # consecutive recorded nights, this one included
    alert_nights: int  # CHURN_ESTIMATE_ALERT_NIGHTS
    status: str  # ok | low (under the floor tonight) | alert (for alert_nights nights)

    def summary(self) -> dict:
        """The history line (and the report's body)."""
        return dataclasses.asdict(self) | {"as_of": self.as_of.isoformat()}


@dataclass(frozen=True)
class Checked:
    """One night's estimate beside its realized figures (None where outcomes has none)."""

    as_of: str
    estimated: dict[str, float]
    realized: dict[str, float | None]

    def difference(self, name: str) -> float | None:
        """Estimated minus realized."""
        realized = self.realized.get(name)
        return None if realized is None else self.estimated[name] - realized


def estimate_report(settings: Settings, as_of: date | None = None) -> EstimateReport:
    """The estimate of the batch of ``as_of`` (default: the newest), and its run of nights
    under the floor from the history (read, not written).

    FileNotFoundError when there is no such batch; ValueError naming the file when a batch
    file is unreadable.
    """
    as_of = _batch_date(settings, as_of)
    predictions = read_predictions(settings.predictions_dir, as_of)
    listed = read_batch_file(
        batch_dir(settings.predictions_dir, as_of) / PREDICTIONS_FILE,
        [ENTITY_KEY, "rank", "risk_band"],
    )
    the_list = select_high_risk(predictions.merge(listed, on=ENTITY_KEY), settings.top_k)
    judged, left_out = uncontacted(predictions, read_assignments(settings, as_of))
    if judged.empty:
        raise ValueError(
            f"every user of the batch of {as_of.isoformat()} is in the contacted arm: "
            "outreach leaves no one to estimate on (CHURN_HOLDOUT_SHARE)"
        )
    expected = expected_metrics(
        judged["churn_risk"].to_numpy(), settings.top_k, settings.estimate_draws, settings.seed
    )
    floor = settings.realized_pr_auc_skill_floor
    earlier = [line for line in estimate_history(settings) if line["as_of"] < as_of.isoformat()]
    tonight = {"expected": dataclasses.asdict(expected)}
    nights = nights_under_floor([*earlier, tonight], floor)
    status = "ok" if nights == 0 else "alert" if nights >= settings.estimate_alert_nights else "low"
    return EstimateReport(
        as_of=as_of,
        model_version=",".join(sorted(predictions["model_version"].astype(str).unique())),
        expected=expected,
        contacted_left_out=left_out,
        list_size=len(the_list),
        list_precision=float(the_list["churn_risk"].mean()),  # never empty: K >= 1
        floor=floor,
        nights_under_floor=nights,
        alert_nights=settings.estimate_alert_nights,
        status=status,
    )


def nights_under_floor(lines: list[dict], floor: float) -> int:
    """How many of the last ``lines`` (history lines, oldest first) in a row have an
    estimated PR-AUC skill under ``floor``: the recorded nights, whatever the days between."""
    count = 0
    for line in reversed(lines):
        if estimated_skill(line) >= floor:
            break
        count += 1
    return count


def estimated_skill(line: Mapping) -> float:
    """The estimated PR-AUC skill (the draws' mean) of a history line."""
    return float(line["expected"]["pr_auc_skill"]["mean"])


def write_estimate_report(
    report: EstimateReport, settings: Settings, checked: list[Checked] | None = None
) -> Path:
    """Write the report's JSON and its chart and append its history line; return the JSON's
    path. ``checked``: the estimate beside realized (``check_against_realized``) after this
    night's line is in the history."""
    out = settings.estimate_dir
    stem = f"as_of={report.as_of.isoformat()}"
    written_at = datetime.now(UTC).isoformat()
    append_record(settings.estimate_history_path, report.summary() | {"written_at": written_at})
    checked = check_against_realized(settings) if checked is None else checked
    body = report.summary() | {
        "versus_realized": [dataclasses.asdict(c) for c in checked],
        "written_at": written_at,
    }
    path = write_json(body, out / f"{stem}.json")
    estimate_lines(
        _series(estimate_history(settings), checked),
        report.floor,
        out / f"{stem}.png",
        title=f"Estimated and realized performance, night by night\n"
        f"newest: {report.as_of.isoformat()}, model {report.model_version}",
    )
    return path


def estimate_history(settings: Settings) -> list[dict]:
    """The newest line of each night, oldest first; ``[]`` before the first estimate."""
    newest = {str(r["as_of"]): r for r in read_records(settings.estimate_history_path)}
    return [newest[day] for day in sorted(newest)]


def versus_realized(estimates: list[dict], outcomes: Mapping[str, Mapping]) -> list[Checked]:
    """Each estimated night that has realized figures, oldest first: the expected figures
    (``COMPARED``) beside the realized ones of the same night T."""
    checked = []
    for line in estimates:
        realized = outcomes.get(line["as_of"])
        if realized is None:
            continue
        estimated = {name: _point(line["expected"][name]) for name in COMPARED}
        checked.append(Checked(line["as_of"], estimated,
                               {name: realized.get(name) for name in COMPARED}))  # fmt: skip
    return checked


def check_against_realized(settings: Settings) -> list[Checked]:
    """``versus_realized`` over the estimate history and the outcomes history as recorded."""
    return versus_realized(estimate_history(settings),
                           read_outcomes(settings.outcomes_history_path))  # fmt: skip


def print_estimate(report: EstimateReport, checked: list[Checked], console: Console) -> None:
    """The night's estimate with its bands, then how far past estimates were from the truth."""
    e = report.expected
    style = STATUS_STYLES[report.status]
    console.print(
        f"Estimate for the batch of {report.as_of.isoformat()}: [{style}]{report.status}[/] "
        f"(model {report.model_version}; {e.rows:,} users, {report.contacted_left_out:,} "
        f"contacted left out; {e.draws} label draws)"
    )
    table = Table("figure", "expected", "5 %", "95 %")
    table.add_row("churn rate", f"{e.churn_rate:.3f}", "", "")
    table.add_row(f"precision@{e.k}", f"{e.precision_at_k:.3f}", "", "")
    table.add_row(f"the list's hit rate ({report.list_size} users)",
                  f"{report.list_precision:.3f}", "", "")  # fmt: skip
    for name, value in (("PR-AUC", e.pr_auc), ("PR-AUC skill", e.pr_auc_skill),
                        ("ROC-AUC", e.roc_auc)):  # fmt: skip
        table.add_row(name, f"{value.mean:.3f}", f"{value.lower:.3f}", f"{value.upper:.3f}")
    console.print(table)
    console.print(
        f"PR-AUC skill floor {report.floor:.2f}: under it {report.nights_under_floor} "
        f"night(s) in a row (alert at {report.alert_nights})"
    )
    if not checked:
        console.print("[dim]No estimated night has realized figures yet.[/dim]")
        return
    versus = Table("night", *(f"{n} est / real / diff" for n in COMPARED),
                   title="How far the estimate was from the truth, night by night")  # fmt: skip
    for c in checked:
        versus.add_row(c.as_of, *(_cell(c, name) for name in COMPARED))
    console.print(versus)


def estimate_samples(report: EstimateReport, checked: list[Checked]) -> list[Sample]:
    """Gauges of the night's estimate; and of the newest night with realized figures,
    estimated and realized side by side (``source``), so one panel plots the same night."""
    e = report.expected
    labels = {"model_version": report.model_version}
    as_of = start_of(report.as_of).timestamp()
    values: list[tuple[str, float, str]] = [
        ("churn_estimate_churn_rate", e.churn_rate, "Expected churn rate (mean p), newest batch"),
        ("churn_estimate_precision_at_k", e.precision_at_k, "Expected precision among the top K"),
        ("churn_estimate_list_precision", report.list_precision,
         "Expected share of churners on the night's list (top K and the high band)"),
        ("churn_estimate_pr_auc_skill_floor", report.floor,
         "The PR-AUC skill floor the estimate is held to (CHURN_REALIZED_PR_AUC_SKILL_FLOOR)"),
        ("churn_estimate_nights_under_floor", report.nights_under_floor,
         "Consecutive nights the estimated PR-AUC skill is under its floor"),
        ("churn_estimate_skill_low", float(report.status == "alert"),
         "1 when the estimated skill is under the floor for CHURN_ESTIMATE_ALERT_NIGHTS nights"),
        ("churn_estimate_as_of_timestamp_seconds", as_of, "Batch date (T) the estimate is of"),
    ]  # fmt: skip
    # Names written out whole: the dashboard and alert tests find exported names as literals.
    for names, drawn in (
        (("churn_estimate_pr_auc", "churn_estimate_pr_auc_lower", "churn_estimate_pr_auc_upper"),
         e.pr_auc),
        (("churn_estimate_pr_auc_skill", "churn_estimate_pr_auc_skill_lower",
          "churn_estimate_pr_auc_skill_upper"), e.pr_auc_skill),
        (("churn_estimate_roc_auc", "churn_estimate_roc_auc_lower", "churn_estimate_roc_auc_upper"),
         e.roc_auc),
    ):  # fmt: skip
        text = f"Estimated {names[0].removeprefix('churn_estimate_')} of the newest batch"
        values += [(names[0], drawn.mean, f"{text} (mean of the draws)"),
                   (names[1], drawn.lower, f"{text}: 5th percentile"),
                   (names[2], drawn.upper, f"{text}: 95th percentile")]  # fmt: skip
    samples = [Sample(name, float(value), text, labels) for name, value, text in values]
    if checked:
        newest = checked[-1]
        night = datetime.fromisoformat(newest.as_of).replace(tzinfo=UTC).timestamp()
        samples.append(Sample("churn_estimate_checked_as_of_timestamp_seconds", night,
                              "The newest night with both an estimate and realized figures"))  # fmt: skip
        for name, gauge in CHECKED_GAUGES.items():
            for source, figures in (("estimated", newest.estimated), ("realized", newest.realized)):
                if (value := figures.get(name)) is not None:
                    samples.append(Sample(gauge, float(value),
                                          f"{name} of the newest night with realized figures",
                                          {"source": source}))  # fmt: skip
    return samples


def _batch_date(settings: Settings, as_of: date | None) -> date:
    available = batch_dates(settings.predictions_dir)
    if as_of is None:
        if not available:
            raise FileNotFoundError(
                f"no batch predictions in {settings.predictions_dir}: run `churn batch score`"
            )
        return available[-1]
    if as_of not in available:
        newest = available[-1].isoformat() if available else "none"
        raise FileNotFoundError(
            f"no batch predictions for {as_of.isoformat()} in {settings.predictions_dir} "
            f"(newest: {newest}): run `churn batch score`"
        )
    return as_of


def _point(value: float | Mapping) -> float:
    """A figure of the history: a closed-form number or a drawn band's mean."""
    return float(value["mean"]) if isinstance(value, Mapping) else float(value)


def _cell(checked: Checked, name: str) -> str:
    difference = checked.difference(name)
    if difference is None:
        return f"{checked.estimated[name]:.3f} / - / -"
    realized = checked.realized[name]
    return f"{checked.estimated[name]:.3f} / {realized:.3f} / {difference:+.3f}"


def _series(lines: list[dict], checked: list[Checked]) -> dict[str, dict[str, tuple]]:
    """The chart's data: per figure, per night, (estimate, lower, upper, realized or None)."""
    realized = {c.as_of: c.realized for c in checked}
    series: dict[str, dict[str, tuple]] = {}
    for name in ("pr_auc_skill", "precision_at_k", "roc_auc"):
        series[name] = {}
        for line in lines:
            value = line["expected"][name]
            drawn = isinstance(value, Mapping)
            low, high = (value["lower"], value["upper"]) if drawn else (None, None)
            series[name][line["as_of"]] = (_point(value), low, high,
                                           realized.get(line["as_of"], {}).get(name))  # fmt: skip
    return series
