"""The exit codes of the monitoring checks, one table per check and no imports, so that the
stage list (``churn.stages``, which the night's light process loads) reads the same codes as
the commands that exit with them. 1 stays an error (missing or unreadable input), 2 a bad
configuration or usage."""

from __future__ import annotations

# `churn monitor drift`: a scheduler can tell the levels apart.
DRIFT = {"ok": 0, "warn": 10, "alert": 20}
# `churn monitor estimate`: estimated PR-AUC skill under the floor, then for
# CHURN_ESTIMATE_ALERT_NIGHTS nights.
ESTIMATE = {"ok": 0, "low": 10, "alert": 20}
# `churn monitor skew`: a sampled feature cell differs online, or a sampled user is missing.
SKEW = {"ok": 0, "mismatch": 3}
