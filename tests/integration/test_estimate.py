"""``churn monitor estimate`` on a small real world: two nightly batches a horizon apart, the
realized outcomes of the older one, a real Pushgateway.

What is asserted is the plumbing, never the model's verdict on 300 random users: the
estimate judges exactly the users the outcomes judge, the report and the gauges set each
night's estimate beside its realized figures, and the night's stage and the command give
the same figures.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from batch.job import score_population
from churn.cli import app
from churn.stages import STAGES, StageInputs
from core.history import read_records
from monitor.estimate import EXIT_CODES
from monitor.jobs import SUCCESS
from monitor.outcomes import read_history, realized_outcomes
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.integration.world import TODAY, copy_world
from training.promote import force

pytestmark = pytest.mark.integration

# The shared world's end: it is the same data on any date, shifted, so nothing here depends
# on today but the dates the files are named after.
END = TODAY


@pytest.fixture(scope="module")
def world(tmp_path_factory, isolated_settings, trained_world):
    tmp = tmp_path_factory.mktemp("estimate")
    with running_pushgateway(tmp) as gateway:
        settings = isolated_settings(tmp, pushgateway_url=gateway, top_k=20, estimate_draws=100)
        result = copy_world(trained_world, settings, online=False)
        force(settings, result.versions[result.best], "estimate test")
        old = END - timedelta(days=settings.horizon_days + 5)
        score_population(settings, as_of=old)
        score_population(settings, as_of=END)
        yield settings, old.date(), gateway


def _estimate(settings, *args: str):
    result = CliRunner().invoke(app, ["monitor", "estimate", *args], env=settings.as_env())
    assert result.exit_code in EXIT_CODES.values(), result.output
    return result


def test_each_night_is_estimated_then_set_beside_its_realized_figures(world):
    settings, old, gateway = world
    first = _estimate(settings, "--as-of", old.isoformat())
    assert "No estimated night has realized figures yet." in first.output
    outcomes = realized_outcomes(settings)
    (realized,) = outcomes.evaluated  # tonight's horizon has not passed
    assert realized.as_of == old

    tonight = _estimate(settings)  # the newest batch
    assert "How far the estimate was from the truth, night by night" in tonight.output
    lines = {line["as_of"]: line for line in read_records(settings.estimate_history_path)}
    assert set(lines) == {old.isoformat(), END.date().isoformat()}
    then = lines[old.isoformat()]
    # The users the outcomes judged, no more, no fewer: contacted arm left out alike.
    assert then["expected"]["rows"] == realized.rows
    assert then["contacted_left_out"] == realized.contacted_left_out
    assert then["expected"]["k"] == realized.k

    report = json.loads((settings.estimate_dir / f"as_of={END.date()}.json").read_text())
    assert EXIT_CODES[report["status"]] == tonight.exit_code
    (checked,) = report["versus_realized"]
    assert checked["as_of"] == old.isoformat()
    recorded = read_history(settings.outcomes_history_path)[old.isoformat()]
    for name in ("pr_auc", "pr_auc_skill", "roc_auc", "precision_at_k"):
        assert checked["realized"][name] == recorded[name]
        drawn = then["expected"][name]
        assert checked["estimated"][name] == (drawn["mean"] if isinstance(drawn, dict) else drawn)
    assert (settings.estimate_dir / f"as_of={END.date()}.png").stat().st_size > 0

    pushed = pushed_samples(gateway, "churn_estimate")
    version = (("model_version", report["model_version"]),)
    skill = report["expected"]["pr_auc_skill"]
    assert pushed[("churn_estimate_pr_auc_skill", version)] == skill["mean"]
    assert pushed[("churn_estimate_pr_auc_skill_lower", version)] == skill["lower"]
    assert (
        pushed[("churn_estimate_checked_pr_auc", (("source", "realized"),))] == recorded["pr_auc"]
    )
    assert (
        pushed[("churn_estimate_checked_pr_auc", (("source", "estimated"),))]
        == (then["expected"]["pr_auc"]["mean"])
    )
    night = datetime.combine(old, datetime.min.time(), UTC).timestamp()
    assert pushed[("churn_estimate_checked_as_of_timestamp_seconds", ())] == night
    runs = pushed_samples(gateway, "churn_estimate")
    assert any(name == SUCCESS for name, _ in runs)


def test_the_nights_stage_estimates_the_batch_it_just_scored_and_pushes_it(world):
    settings, _, gateway = world
    forget = urllib.request.Request(f"{gateway}/metrics/job/churn_estimate", method="DELETE")
    urllib.request.urlopen(forget, timeout=10).close()  # the figures the command pushed
    assert not any(
        n.startswith("churn_estimate_") for n, _ in pushed_samples(gateway, "churn_estimate")
    )
    check = STAGES["estimate"].run(StageInputs.night(settings, END.date() - timedelta(days=1)))
    report = check.report
    assert report.as_of == END.date()
    assert check.exit_code == EXIT_CODES[report.status]
    newest = read_records(settings.estimate_history_path)[-1]
    assert newest["as_of"] == END.date().isoformat()
    assert newest["expected"] == json.loads(json.dumps(report.summary()["expected"]))
    # The stage pushes its figures itself, run in-process as by its command.
    pushed = pushed_samples(gateway, "churn_estimate")
    version = (("model_version", report.model_version),)
    assert pushed[("churn_estimate_pr_auc_skill", version)] == report.expected.pr_auc_skill.mean
