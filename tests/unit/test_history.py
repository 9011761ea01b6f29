"""Append-only histories: whole lines, a torn tail skipped then cut, damage named."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest

from core import history
from core.history import HistoryError, append_record, read_records, start_from

WRITERS, APPENDS = 4, 50


def test_records_come_back_in_append_order(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "history.jsonl"
    assert read_records(path) == []
    for n in range(3):
        append_record(path, {"n": n, "text": "é"})
    assert read_records(path) == [
        {"n": 0, "text": "é"},
        {"n": 1, "text": "é"},
        {"n": 2, "text": "é"},
    ]
    assert path.read_bytes().endswith(b"}\n")
    assert (tmp_path / "deep" / ".history.jsonl.lock").exists()


def test_creating_the_file_fsyncs_its_directory(tmp_path: Path, monkeypatch) -> None:
    synced = []
    monkeypatch.setattr(history, "fsync_path", synced.append)
    path = tmp_path / "history.jsonl"
    append_record(path, {"n": 0})
    append_record(path, {"n": 1})
    assert synced == [tmp_path]  # the new entry once; later appends fsync the file only


def test_a_torn_last_line_is_skipped_with_a_warning_then_cut(tmp_path: Path, caplog) -> None:
    """A crash mid-append leaves text without its newline: every later read works."""
    path = tmp_path / "history.jsonl"
    append_record(path, {"n": 0})
    with path.open("a") as handle:
        handle.write('{"n": 1, "cut')
    with caplog.at_level(logging.WARNING, logger="core.history"):
        assert read_records(path) == [{"n": 0}]
    assert str(path) in caplog.text and "after the last newline" in caplog.text

    append_record(path, {"n": 2})
    assert read_records(path) == [{"n": 0}, {"n": 2}]
    assert path.read_text() == '{"n": 0}\n{"n": 2}\n'


def test_a_torn_first_line_is_cut_too(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"n": 0, "cu')
    assert read_records(path) == []
    append_record(path, {"n": 1})
    assert path.read_text() == '{"n": 1}\n'


@pytest.mark.parametrize(
    ("line", "why"), [("{not json", "Expecting"), ("[1, 2]", "not a JSON object")]
)
def test_a_damaged_complete_line_is_named(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(f'{{"n": 0}}\n\n{line}\n{{"n": 3}}\n')
    with pytest.raises(HistoryError, match=rf"{path}, line 3: {why}"):
        read_records(path)
    assert issubclass(HistoryError, ValueError)  # the CLI's one-line error for bad files


def test_a_record_that_is_not_json_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append_record(path, {"n": 0})
    with pytest.raises(TypeError):
        append_record(path, {"n": object()})
    assert path.read_text() == '{"n": 0}\n'


def _append_many(path: str, writer: int) -> None:
    for n in range(APPENDS):
        append_record(Path(path), {"writer": writer, "n": n, "pad": "x" * 5000})


def test_concurrent_writers_never_cut_each_others_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join()
    assert [process.exitcode for process in writers] == [0] * WRITERS
    records = read_records(path)
    assert len(records) == WRITERS * APPENDS
    for w in range(WRITERS):  # each writer's records whole and in its order
        assert [r["n"] for r in records if r["writer"] == w] == list(range(APPENDS))


def test_start_from_creates_the_history_once(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    assert start_from(path, [{"n": 0}, {"n": 1}])
    assert not start_from(path, [{"n": 9}])  # it exists: left as it is
    append_record(path, {"n": 2})
    assert read_records(path) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [json.loads(line) for line in path.read_text().splitlines()] == read_records(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
