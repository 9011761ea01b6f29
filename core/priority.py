"""Batch work below the API: a job that shares its cores with the API lowers its priority.

On one box the API, Redis and the night's jobs share the cores. The materialize writes
the online store about 50,000 users a second (``feature_repo.online_writer``) and, at the
same priority, took CPU from the API: its p99 went to 2.3-3.2x while it ran, 1.7x at
niceness 10 (docs/performance.md, "A million users on one box"). A niceness only orders
who runs first; on an idle machine the job runs as fast as before.
"""

from __future__ import annotations

import os


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness to ``niceness`` (never lowers it); the niceness now."""
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
    return current
