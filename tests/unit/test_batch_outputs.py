"""The batch output layout: where a date's batch lives, which directories are batches."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from batch.outputs import PREDICTIONS_FILE, batch_dates, batch_dir, read_predictions
from core.atomic import write_parquet

DAY = date(2026, 11, 20)


def test_a_batch_directory_is_named_by_its_date(tmp_path: Path) -> None:
    assert batch_dir(tmp_path, DAY) == tmp_path / "as_of=2026-11-20"


def test_no_predictions_dir_means_no_batches(tmp_path: Path) -> None:
    assert batch_dates(tmp_path / "missing") == []


def test_batch_dates_lists_good_names_oldest_first(tmp_path: Path) -> None:
    for day in (date(2026, 11, 20), date(2026, 1, 2), date(2026, 11, 19)):
        batch_dir(tmp_path, day).mkdir()
    assert batch_dates(tmp_path) == [date(2026, 1, 2), date(2026, 11, 19), date(2026, 11, 20)]


def test_staging_and_unrelated_names_are_not_batches_and_not_warned_about(
    tmp_path: Path, caplog
) -> None:
    batch_dir(tmp_path, DAY).mkdir()
    (tmp_path / ".as_of=2026-11-21.k3j2").mkdir()  # the batch job's staging directory
    (tmp_path / ".as_of=2026-11-19.0f3e.old").mkdir()  # a replaced batch on its way out
    (tmp_path / "README.txt").write_text("the nightly batches")
    (tmp_path / "archive").mkdir()
    with caplog.at_level(logging.WARNING, logger="batch.outputs"):
        assert batch_dates(tmp_path) == [DAY]
    assert caplog.records == []


@pytest.mark.parametrize(
    "name",
    [
        "as_of=2026-13-45",  # the right shape, not a date
        "as_of=not-a-date",
        "as_of=2026-11-20.bak",  # a person's backup copy
        "as_of=20261120",  # ISO basic format: date.fromisoformat would take it
        "as_of=2026-11-2",
        "as_of=",
    ],
)
def test_a_bad_name_is_skipped_with_a_warning_naming_it(tmp_path: Path, caplog, name: str) -> None:
    batch_dir(tmp_path, DAY).mkdir()
    (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING, logger="batch.outputs"):
        assert batch_dates(tmp_path) == [DAY]
    [record] = caplog.records
    assert str(tmp_path / name) in record.getMessage()
    assert "not a batch directory" in record.getMessage()


def test_a_file_with_a_batch_name_is_not_a_batch(tmp_path: Path, caplog) -> None:
    batch_dir(tmp_path, DAY).write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="batch.outputs"):
        assert batch_dates(tmp_path) == []
    assert "not a batch directory" in caplog.text


def _predictions(**columns: list) -> pd.DataFrame:
    base = {"user_id": ["a", "b"], "churn_risk": [0.9, 0.1], "model_version": ["v1", "v1"]}
    return pd.DataFrame(base | columns)


def test_read_predictions_returns_what_monitoring_reads(tmp_path: Path) -> None:
    frame = _predictions(rank=[1, 2])
    write_parquet(frame, batch_dir(tmp_path, DAY) / PREDICTIONS_FILE)
    got = read_predictions(tmp_path, DAY)
    pd.testing.assert_frame_equal(got, frame.drop(columns="rank"))


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (_predictions().iloc[:0], "has no rows"),
        (_predictions(churn_risk=[0.2, 1.5]), r"churn_risk must be a probability"),
        (_predictions(user_id=["a", "a"]), "user_id must be present and unique"),
        (_predictions().drop(columns="model_version"), r"lacks the columns \['model_version'\]"),
    ],
)
def test_bad_predictions_are_named(tmp_path: Path, frame: pd.DataFrame, problem: str) -> None:
    path = batch_dir(tmp_path, DAY) / PREDICTIONS_FILE
    write_parquet(frame, path)
    with pytest.raises(ValueError, match=rf"{path}.*{problem}"):
        read_predictions(tmp_path, DAY)


def test_a_missing_or_corrupt_predictions_file_is_named(tmp_path: Path) -> None:
    path = batch_dir(tmp_path, DAY) / PREDICTIONS_FILE
    with pytest.raises(FileNotFoundError, match=rf"{path} is missing"):
        read_predictions(tmp_path, DAY)
    path.parent.mkdir()
    path.write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match=rf"cannot read {path}: corrupt or not Parquet"):
        read_predictions(tmp_path, DAY)
