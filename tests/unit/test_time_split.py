"""training.train.time_split: the parts of the as-of times, and a history too short to split
says how many days it lacks (docs/your-data.md quotes the line)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from training.train import time_split

START = pd.Timestamp("2026-01-01", tz="UTC")


def _times(first: int, count: int, stride: int) -> list[pd.Timestamp]:
    return [START + pd.Timedelta(days=first + i * stride) for i in range(count)]


@pytest.mark.parametrize("stride", [1, 7])
def test_the_days_it_lacks_are_exactly_the_days_that_make_it_fit(make_settings, stride):
    settings = make_settings(validation_days=7, horizon_days=30, calibration_days=4,
                             asof_stride_days=stride)  # fmt: skip
    times = _times(0, 12 if stride == 1 else 9, stride)
    with pytest.raises(ValueError, match=r"use a longer history \((\d+) more days\)") as short:
        time_split(times, settings)
    more = int(re.search(r"\((\d+) more days\)", str(short.value)).group(1))
    longer = _times(-more, more // stride, stride) + times  # the history starts earlier
    split = time_split(longer, settings)
    assert len(split.fit) == 1 and len(split.calibration) == 4 and len(split.validation) == 7
    if more > stride:  # one stride fewer is still short
        with pytest.raises(ValueError, match="leave nothing to fit on"):
            time_split(longer[1:], settings)
