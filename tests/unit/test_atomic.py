"""Atomic directories: swapped in whole, or, with replace=False, never over another one."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.atomic import atomic_dir


def test_a_directory_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    for text in ("old", "new"):
        with atomic_dir(target) as tmp:
            (tmp / "file.txt").write_text(text)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "file.txt").read_text() == "new"


def test_without_replace_a_directory_that_appeared_meanwhile_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    with (
        pytest.raises(FileExistsError, match="v1 already exists"),
        atomic_dir(target, replace=False) as tmp,
    ):
        (tmp / "model").write_text("mine")
        target.mkdir()  # another writer got there first
        (target / "model").write_text("theirs")
    assert (target / "model").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temporary left behind


def test_a_failure_inside_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "file.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as tmp:
        (tmp / "file.txt").write_text("half")
        raise RuntimeError("boom")
    assert (target / "file.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
