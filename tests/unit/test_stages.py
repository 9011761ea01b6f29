"""The one list of stages: every stage is a real ``churn`` command with the options it is
given, and the demo, the nightly and the benchmark runner name only stages of the list."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import typer

from churn.cli import app
from churn.stages import DEMO, NIGHT, STAGES, StageInputs

REPO = Path(__file__).resolve().parents[2]


def command_of(argv: list[str]) -> tuple[Any, list[str]]:
    """The (click) command ``argv`` names, and the arguments left for it."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands"):  # a group: the next word names its sub-command
        command, argv = command.commands[argv[0]], argv[1:]
    return command, argv


def inputs_of_every_kind(settings, tmp_path: Path) -> list[StageInputs]:
    portal = (tmp_path / "users.csv", tmp_path / "events.csv")
    for path in portal:
        path.write_text("")  # the command checks that they exist
    return [
        replace(StageInputs.night(settings, date(2026, 11, 25), portal), users=300, days=60),
        StageInputs(settings, datetime(2026, 11, 26, 7, 30, tzinfo=UTC), users=300, days=60,
                    portal=portal),
    ]  # fmt: skip


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_is_a_churn_command_with_the_options_it_is_given(name, make_settings, tmp_path):
    stage = STAGES[name]
    for inputs in inputs_of_every_kind(make_settings(), tmp_path):
        command, args = command_of(stage.argv(inputs))
        assert command.name == stage.command[-1]
        context = command.make_context(name, list(args))  # a bad option or value raises here
        options = {o for p in command.params for o in p.opts}
        assert {a for a in args if a.startswith("--")} <= options
        assert all(
            v is not None for k, v in context.params.items() if f"--{k.replace('_', '-')}" in args
        )


def test_the_stage_options_carry_the_run_time_and_the_world():
    settings = None  # options read no setting
    demo = StageInputs(settings, datetime(2026, 11, 26, 7, 30, tzinfo=UTC), users=300, days=60)  # type: ignore[arg-type]
    assert STAGES["generate"].argv(demo) == [
        "data", "generate", "--users", "300", "--days", "60", "--start", "2026-09-27",
        "--scenario", "baseline",
    ]  # fmt: skip
    assert STAGES["prepare"].argv(demo) == ["data", "prepare"]  # the whole history
    assert STAGES["materialize"].argv(demo) == ["features", "materialize", "--end",
                                                "2026-11-26T07:30:00"]  # fmt: skip
    assert STAGES["batch"].argv(demo) == ["batch", "score", "--as-of", "2026-11-26"]


def test_the_lists_name_stages_and_findings_belong_to_the_night():
    assert set(DEMO) | set(NIGHT) <= set(STAGES)
    assert {n for n, s in STAGES.items() if s.findings} == {"estimate", "drift", "skew"}
    assert set(NIGHT) <= {n for n in STAGES if n != "generate"}


def test_the_benchmark_runner_measures_stages_of_the_list():
    spec = importlib.util.spec_from_file_location("runner", REPO / "benchmarks" / "runner.py")
    assert spec and spec.loader
    runner = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("runner", runner)
    spec.loader.exec_module(runner)
    for name, bench in runner.BENCHES.items():
        for part in bench.stages:
            assert part in STAGES or part in runner.PARTS, (name, part)
    pipeline = {p for b in runner.BENCHES.values() for p in b.stages if p in STAGES}
    assert {"generate", "validate", "prepare", "features", "apply", "materialize", "train",
            "batch"} <= pipeline  # fmt: skip
