"""Batch work lowers its priority below the API's, and never raises it back."""

from __future__ import annotations

import os
import subprocess
import sys


def _niceness_after(*targets: int) -> list[int]:
    """In a child (a niceness cannot be taken back): lower_priority to each target in turn."""
    code = (
        "import os, sys; from core.priority import lower_priority; "
        "print(*[lower_priority(int(t)) for t in sys.argv[1:]], os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code, *map(str, targets)], capture_output=True,
                         text=True, check=True, cwd=os.getcwd())  # fmt: skip
    return [int(n) for n in out.stdout.split()]


def test_priority_is_lowered_to_the_niceness_and_never_raised():
    start = os.nice(0)
    high, low, higher = (min(start + k, 19) for k in (5, 2, 7))  # 19 is as nice as it gets
    first, second, third, final = _niceness_after(high, low, higher)
    assert first == high
    assert second == high  # a lower niceness asked later does not raise the priority back
    assert third == final == higher
