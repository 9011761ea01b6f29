"""Progress on the console: a spinner or bar per stage, and a timing table at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from training.train import TrainResult


@dataclass
class StageLog:
    """Times and one-line results of the stages of a run, printed as a table."""

    console: Console = field(default_factory=Console)
    rows: list[tuple[str, float, str]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
        """Show a live spinner (or a bar when ``total`` is known) while the stage runs.

        Yields a ``progress(done, total)`` callback for stages that can report steps.
        The caller sets the result line with ``note``.
        """
        columns = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        start = time.perf_counter()
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(name, total=total)

            def advance(done: int, all_: int) -> None:  # all_ 0: a count with no known end
                progress.update(task, completed=done, total=all_ or None)

            yield advance
        self.rows.append((name, time.perf_counter() - start, ""))

    def note(self, detail: str) -> None:
        """Attach a result line to the stage that just finished, and print it."""
        name, seconds, _ = self.rows[-1]
        self.rows[-1] = (name, seconds, detail)
        self.console.print(f"[green]✓[/green] {name} [dim]({seconds:.1f} s)[/dim]: {detail}")

    def table(self, title: str = "Stages") -> Table:
        table = Table(title=title)
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        table.add_column("result")
        for name, seconds, detail in self.rows:
            table.add_row(name, f"{seconds:.1f}", detail)
        table.add_row("[bold]total", f"[bold]{sum(r[1] for r in self.rows):.1f}", "")
        return table


def tuning_table(result: TrainResult) -> Table:
    """What each model kind's search tried on the fit rows' folds, and chose."""
    table = Table(
        title="Tuning: forward, user-disjoint folds of the fit rows (mean PR-AUC over the folds)"
    )
    for header in ("model", "tried", "folds", "defaults", "chosen", "parameters"):
        table.add_column(header, justify="left" if header in ("model", "parameters") else "right")
    for kind, tuning in result.tuning.items():
        if tuning.skipped is not None:
            table.add_row(kind, "0", "0", "—", "—", f"{tuning.chosen_text} (defaults)")
            table.caption = f"not tuned: {tuning.skipped}"  # the same fit rows for both kinds
            continue
        best = max(trial.mean_pr_auc for trial in tuning.trials)
        table.add_row(kind, str(len(tuning.trials)), str(len(tuning.folds)),
                      f"{tuning.trials[0].mean_pr_auc:.3f}", f"{best:.3f}",
                      tuning.chosen_text)  # fmt: skip
    return table


def training_table(result: TrainResult) -> Table:
    """Validation metrics of the trained models beside the references, one row each."""
    columns = {
        "PR-AUC": "pr_auc",
        "lift": "pr_auc_lift",
        "ROC-AUC": "roc_auc",
        "P@K": "precision_at_k",
        "P top 5%": "precision_top",
        "R top 5%": "recall_top",
        "Brier": "brier",
    }
    parts = ", ".join(
        f"{name} {result.rows[name]:,} rows ({result.positive_rate[name]:.1%} churn, "
        f"{result.split.describe()[name][0][:10]} … {result.split.describe()[name][1][:10]})"
        for name in ("fit", "calibration", "validation")
    )
    table = Table(title="Validation: the newest as-of days, after the embargo", caption=parts)
    table.add_column("model")
    for header in columns:
        table.add_column(header, justify="right")
    rows = dict(result.metrics) | {f"ref: {k}": m for k, m in result.references.items()}
    for name, metrics in rows.items():
        cells = [metrics.get(key) for key in columns.values()]
        table.add_row(name, *("—" if v is None else f"{v:.3f}" for v in cells))
    return table
