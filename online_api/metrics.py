"""Prometheus metrics of the API (names are the contract with the dashboards).

Route labels are templates (``/users/{user_id}/churn-risk``), never raw paths,
so label cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A service that answers in about a millisecond needs buckets below it.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class ApiMetrics:
    """One set of metrics on its own registry (one per app, so tests do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "churn_api_requests", "Requests by route template and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "churn_api_request_seconds", "Request latency", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.fetch = Histogram(
            "churn_api_online_fetch_seconds", "Online-store fetch latency",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference = Histogram(
            "churn_api_inference_seconds", "Model inference latency",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.score = Histogram(
            "churn_api_churn_risk", "Served churn risk",
            buckets=tuple(i / 20 for i in range(1, 21)), registry=r,
        )  # fmt: skip
        self.bands = Counter("churn_api_risk_band", "Served risk bands", ["band"], registry=r)
        self.feature_age = Histogram(
            "churn_api_feature_age_seconds", "Age of the features served",
            buckets=(3600, 6 * 3600, 12 * 3600, 24 * 3600, 36 * 3600, 48 * 3600, 72 * 3600),
            registry=r,
        )  # fmt: skip
        self.errors = Counter("churn_api_errors", "Errors by kind", ["kind"], registry=r)
        self.model = Gauge(
            "churn_api_model_info", "The model being served (value 1)", ["version", "kind"],
            registry=r,
        )  # fmt: skip
