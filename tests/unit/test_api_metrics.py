"""The API's batched metrics write what one call per user would have written."""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from online_api.metrics import LATENCY_BUCKETS, ApiMetrics, observe_all

# On a bound, between bounds, above the last finite one, infinite, negative, NaN, repeated.
VALUES = [0.0005, 0.0007, 0.0007, 2.0, math.inf, -1.0, 0.00025, math.nan, 0.3]


def _histogram(observe: Callable[[Histogram], object]) -> bytes:
    """The text exposition of a histogram ``observe`` fed, without its creation time."""
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    observe(histogram.labels("r"))
    lines = generate_latest(registry).splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"h_created"))


def test_observing_all_at_once_exposes_what_observing_one_by_one_does():
    one_by_one = _histogram(lambda child: [child.observe(v) for v in VALUES])
    at_once = _histogram(lambda child: observe_all(child, VALUES))
    assert at_once == one_by_one
    assert b'h_bucket{le="0.0005",route="r"} 3.0' in at_once  # -1.0, 0.00025 and 0.0005


def test_a_batch_is_counted_as_its_users_one_by_one():
    metrics = ApiMetrics()
    metrics.answered([0.9, 0.1, 0.95], ["high", "low", "high"], [3600.0] * 4, lapsed=1)
    metrics.answered([], [], [], lapsed=0)  # a batch of unknown users only
    sample = metrics.registry.get_sample_value
    assert sample("churn_api_risk_band_total", {"band": "high"}) == 2
    assert sample("churn_api_risk_band_total", {"band": "low"}) == 1
    assert sample("churn_api_answers_total", {"status": "scored"}) == 3
    assert sample("churn_api_answers_total", {"status": "lapsed"}) == 1
    assert sample("churn_api_churn_risk_count", {}) == 3
    assert sample("churn_api_churn_risk_sum", {}) == 1.95
    assert sample("churn_api_feature_age_seconds_count", {}) == 4
