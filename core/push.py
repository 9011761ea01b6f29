"""Job metrics to a Prometheus Pushgateway (batch jobs end before any scrape could see them).

Families are built directly (no metric objects): Feast's import switches prometheus_client
to multiprocess values, which a job's one-off push has no use for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, push_to_gateway, pushadd_to_gateway
from prometheus_client.core import GaugeMetricFamily

from core.redaction import redact
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One gauge value: ``name{labels} value`` (``help`` documents the family)."""

    name: str
    value: float
    help: str
    labels: dict[str, str] = field(default_factory=dict)


class _Samples:
    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples

    def collect(self):  # type: ignore[no-untyped-def]
        families: dict[str, GaugeMetricFamily] = {}
        for s in self._samples:
            if s.name not in families:
                families[s.name] = GaugeMetricFamily(s.name, s.help, labels=sorted(s.labels))
            families[s.name].add_metric([s.labels[k] for k in sorted(s.labels)], s.value)
        return list(families.values())


def job_name(name: str) -> str:
    """The Pushgateway job of a stage or command called ``name``: every job is ``churn_<name>``."""
    return f"churn_{name}"


def push(
    settings: Settings,
    job: str,
    samples: Iterable[Sample],
    timeout: float = 5,
    replace: bool = True,
    grouping: dict[str, str] | None = None,
) -> bool:
    """Replace ``job``'s metrics on the Pushgateway; False (and a warning) when it fails.

    With ``replace=False`` only the metrics of these names are replaced and the group's
    others kept. ``grouping`` adds labels to the group's key: a group of its own, which
    pushes to the job's plain group never touch.

    Without ``CHURN_PUSHGATEWAY_URL`` nothing is pushed. A monitoring outage must not
    fail the nightly job that produced the figures, so errors are logged, not raised.
    """
    if not settings.pushgateway_url:
        return False
    registry = CollectorRegistry()
    registry.register(_Samples(list(samples)))
    try:
        send = push_to_gateway if replace else pushadd_to_gateway
        send(
            settings.pushgateway_url, job=job, registry=registry, timeout=timeout,
            grouping_key=grouping or {},
        )  # fmt: skip
    except OSError as exc:
        log.warning("pushgateway %s: %s", redact(settings.pushgateway_url), redact(str(exc)))
        return False
    return True
