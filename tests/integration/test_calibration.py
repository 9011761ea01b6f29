"""``churn monitor outcomes`` checks calibration end to end, on the hand-made outcomes world of
``tests/unit/test_outcomes.py``: the history fields, the plots, the console and the gauges
as a real Pushgateway holds them. That the check sees concept drift, which the estimate
cannot, is shown on generated worlds in ``test_estimate_worlds``.
"""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from churn.cli import app
from monitor.outcomes import read_history, reliability_path
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.unit.test_outcomes import (
    ACTIVITY,
    HORIZON,
    SCORED,
    D,
    predictions,
    write_batch,
    write_user_daily,
)

pytestmark = pytest.mark.integration


def test_churn_monitor_outcomes_records_plots_prints_and_pushes_the_check(make_settings, tmp_path):
    with running_pushgateway(tmp_path) as url:
        settings = make_settings(horizon_days=HORIZON, top_k=10, pushgateway_url=url,
                                 calibration_error_alert=0.3)  # fmt: skip
        write_user_daily(settings, ACTIVITY)
        write_batch(settings, D, predictions(SCORED, seed=1))
        # A model sure that everybody churns, on the newest night: far off the labels.
        sure = predictions(SCORED, seed=2, version="v2").assign(churn_risk=0.99)
        write_batch(settings, date(2026, 3, 12), sure)
        result = CliRunner().invoke(app, ["monitor", "outcomes"], env=settings.as_env())
        assert result.exit_code == 0, result.output
        pushed = pushed_samples(url, "churn_outcomes")

    history = read_history(settings.outcomes_history_path)
    calm, off = history["2026-03-10"], history["2026-03-12"]
    assert 0 < calm["calibration_error"] < 0.3 < off["calibration_error"]
    for record in (calm, off):
        assert sum(b["count"] for b in record["calibration_bins"]) == record["rows"]
        assert reliability_path(settings, date.fromisoformat(record["as_of"])).exists()
    assert pushed[("churn_outcomes_calibration_error", (("model_version", "v2"),))] == (
        pytest.approx(off["calibration_error"])
    )
    assert pushed[("churn_outcomes_calibration_error_threshold", ())] == 0.3
    output = " ".join(result.output.split())
    assert f"2026-03-12: calibration error {off['calibration_error']:.3f} exceeds" in output
    assert "2026-03-10: calibration error" not in output
