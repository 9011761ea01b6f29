"""Atomic writes: a reader sees the old file or the new one, never half of one.

Each writer fills a temporary sibling and renames it over the target; a crash
mid-write leaves the previous output untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        # Data on disk before the rename, the rename on disk after: a power cut
        # leaves the old file or the whole new one, never an empty one.
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's (its entries') changes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(target: Path, staging: Path | None = None, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target`` as a whole.

    The old directory is moved aside, the new one renamed in, then the old one
    removed, so the window without ``target`` is two renames long. ``staging``
    (default: next to ``target``, same file system) holds the temporary and the
    old directory: pass one outside any directory that readers scan. With
    ``replace=False`` an existing ``target`` is never touched: FileExistsError instead,
    even for one that appeared while the temporary was filled. The files at its top
    level, its entries and the rename are fsynced, so a power cut leaves the old directory
    or the new one (files in subdirectories, partitions of a table, are the writer's).
    """
    staging = staging or target.parent
    staging.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=staging))
    try:
        yield tmp
        for path in [*(p for p in tmp.iterdir() if p.is_file()), tmp]:
            fsync_path(path)
        if not replace:
            try:
                os.rename(tmp, target)  # refuses a target with entries, however new
            except OSError as exc:
                if target.exists():
                    raise FileExistsError(f"{target} already exists") from exc
                raise
        else:
            old = staging / f".{target.name}.{uuid.uuid4().hex}.old"
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        fsync_path(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(
    data: pd.DataFrame | pa.Table, target: Path, row_group_size: int | None = None
) -> Path:
    """Write a frame or Arrow table to ``target`` atomically; return ``target``."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)
    return target


def write_text(text: str, target: Path) -> Path:
    """Write text to ``target`` atomically; return ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_json(payload: Any, target: Path) -> Path:
    """Write ``payload`` as indented JSON atomically (dates and paths as strings)."""
    return write_text(json.dumps(payload, indent=2, default=str) + "\n", target)
