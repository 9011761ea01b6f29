"""The list delivered to the retention team (``batch.export``) on real files: what is
written, that the manifest describes it, that a failure part way loses nothing already
delivered, re-runs, backfills, retention, bad export dirs, and the setting itself."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from batch.export import (
    LATEST_FILE,
    MANIFEST_FIELDS,
    MANIFEST_FILE,
    Export,
    ExportError,
    dated_lists,
    dated_path,
    export_list,
    refresh_manifest,
)
from batch.high_risk import HIGH_RISK_COLUMNS
from batch.job import batch_samples
from core.atomic import write_text
from core.scrub import scrub_csv
from core.settings import get_settings
from tests.unit.test_batch import _result

T = datetime(2026, 5, 2, tzinfo=UTC)
KEEP = 30
VERSION = "20260501T000000Z-abcdef12"


def high_risk_csv(folder: Path, users: list[str], name: str = "high_risk.csv") -> Path:
    """A list as the batch writes it: ``HIGH_RISK_COLUMNS``, by pandas, riskiest first."""
    n = len(users)
    frame = pd.DataFrame(
        {
            "rank": range(1, n + 1),
            "user_id": users,
            "churn_risk": [0.9 - 0.01 * i for i in range(n)],
            "risk_band": "high",
            "arm": ["contact", "holdout"] * (n // 2) + ["contact"] * (n % 2),
            "plan": "monthly",
            "monthly_revenue": 19.0,
            "expected_revenue_at_risk": [round(19.0 * (0.9 - 0.01 * i), 2) for i in range(n)],
            "model_version": VERSION,
        }
    )[HIGH_RISK_COLUMNS]
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(frame.to_csv(index=False), folder / name)


def export(tmp_path: Path, as_of: datetime, users: list[str], keep: int = KEEP) -> Export:
    source = high_risk_csv(tmp_path / "batch" / f"{as_of:%Y-%m-%d}", users)
    return export_list(source, tmp_path / "export", as_of, VERSION, keep_nights=keep)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_night_is_delivered_dated_latest_and_described_by_its_manifest(tmp_path):
    exported = export(tmp_path, T, ["u1", "u2", "u3"])

    folder = tmp_path / "export"
    source = (tmp_path / "batch" / "2026-05-02" / "high_risk.csv").read_bytes()
    assert sorted(contents(folder)) == ["high_risk_2026-05-02.csv", LATEST_FILE, MANIFEST_FILE]
    assert exported == Export(folder / "high_risk_2026-05-02.csv", 3, latest=True)
    assert (folder / "high_risk_2026-05-02.csv").read_bytes() == source
    assert (folder / LATEST_FILE).read_bytes() == source
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert tuple(manifest) == MANIFEST_FIELDS
    assert manifest == {
        "as_of": "2026-05-02T00:00:00+00:00",
        "date": "2026-05-02",
        "file": "high_risk_2026-05-02.csv",
        "latest": LATEST_FILE,
        "rows": 3,
        "columns": HIGH_RISK_COLUMNS,
        "sha256": hashlib.sha256(source).hexdigest(),
        "model_version": VERSION,
    }
    assert pd.read_csv(folder / LATEST_FILE)["arm"].tolist() == ["contact", "holdout", "contact"]


def test_the_next_night_moves_latest_and_keeps_the_night_before(tmp_path):
    export(tmp_path, T, ["u1", "u2"])
    nxt = export(tmp_path, T + timedelta(days=1), ["u3"])

    folder = tmp_path / "export"
    assert nxt.latest and sorted(dated_lists(folder)) == [T.date(), T.date() + timedelta(days=1)]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert (manifest["date"], manifest["rows"]) == ("2026-05-03", 1)
    assert pd.read_csv(folder / LATEST_FILE)["user_id"].tolist() == ["u3"]
    assert pd.read_csv(folder / "high_risk_2026-05-02.csv")["user_id"].tolist() == ["u1", "u2"]


def test_a_rerun_of_the_date_replaces_its_files_and_leaves_no_temporary(tmp_path):
    export(tmp_path, T, ["u1", "u2", "u3"])
    again = export(tmp_path, T, ["u9"])

    folder = tmp_path / "export"
    assert again.rows == 1 and again.latest
    assert sorted(contents(folder)) == ["high_risk_2026-05-02.csv", LATEST_FILE, MANIFEST_FILE]
    for name in ("high_risk_2026-05-02.csv", LATEST_FILE):
        assert pd.read_csv(folder / name)["user_id"].tolist() == ["u9"]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["rows"] == 1
    assert manifest["sha256"] == hashlib.sha256((folder / LATEST_FILE).read_bytes()).hexdigest()


def test_a_backfill_writes_its_dated_list_and_leaves_latest_to_the_newest_night(tmp_path):
    export(tmp_path, T, ["u1"])
    folder = tmp_path / "export"
    latest = {n: b for n, b in contents(folder).items() if n in (LATEST_FILE, MANIFEST_FILE)}

    older = export(tmp_path, T - timedelta(days=3), ["u7", "u8"])

    assert not older.latest and older.file == dated_path(folder, T.date() - timedelta(days=3))
    assert pd.read_csv(older.file)["user_id"].tolist() == ["u7", "u8"]
    assert {n: contents(folder)[n] for n in latest} == latest


@pytest.mark.parametrize("failing", ["high_risk_2026-05-03.csv", LATEST_FILE, MANIFEST_FILE])
def test_a_failure_mid_write_loses_nothing_delivered(tmp_path, monkeypatch, failing):
    """The disk fills half way through one file: the previous manifest stays, and still
    describes its own dated list; the previous latest list stays unless only the manifest
    was left to write."""
    export(tmp_path, T, ["u1", "u2"])
    folder = tmp_path / "export"
    before = contents(folder)
    real = Path.write_text

    def disk_full(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.name.startswith(f".{failing}."):  # the temporary of the file that fails
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(ExportError) as error:
        export(tmp_path, T + timedelta(days=1), ["u3"])
    monkeypatch.undo()

    assert str(error.value) == (
        f"cannot export the high-risk list to {folder}: No space left on device"
    )
    after = contents(folder)
    assert not [n for n in after if n.startswith(".")], "no temporary left behind"
    assert after[MANIFEST_FILE] == before[MANIFEST_FILE]
    manifest = json.loads(after[MANIFEST_FILE])
    assert manifest["sha256"] == hashlib.sha256(after[manifest["file"]]).hexdigest()
    if failing != MANIFEST_FILE:
        assert after[LATEST_FILE] == before[LATEST_FILE]


def test_dated_lists_are_kept_for_the_nights_asked_and_nothing_else_is_touched(tmp_path):
    folder = tmp_path / "export"
    for back in (5, 4, 3):
        export(tmp_path, T - timedelta(days=back), ["u1"], keep=3)
    (folder / "notes.txt").write_text("the team's own file")
    (folder / "high_risk_2020-01-01.csv.bak").write_text("a copy")

    newest = export(tmp_path, T, ["u2"], keep=3)

    # Kept: the three nights T-2 d … T (two of them not run); T-3 d and before go.
    assert newest.pruned == ["high_risk_2026-04-27.csv", "high_risk_2026-04-28.csv",
                             "high_risk_2026-04-29.csv"]  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == [
        "high_risk_2020-01-01.csv.bak", "high_risk_2026-05-02.csv", LATEST_FILE, MANIFEST_FILE,
        "notes.txt",
    ]  # fmt: skip
    too_old = export(tmp_path, T - timedelta(days=3), ["u3"], keep=3)
    assert too_old == Export(None, 0, latest=False)
    assert sorted(dated_lists(folder)) == [T.date()]


def test_the_export_dir_is_made_when_its_parent_exists(tmp_path):
    source = high_risk_csv(tmp_path, ["u1"])
    (tmp_path / "mounted").mkdir()
    exported = export_list(source, tmp_path / "mounted" / "export", T, VERSION, KEEP)
    assert exported.file is not None and exported.file.parent == tmp_path / "mounted" / "export"


@pytest.mark.parametrize(
    ("where", "cause"),
    [
        (
            "missing/export",
            "neither it nor its parent {parent} exists (mount the volume there, "
            "or unset CHURN_EXPORT_DIR)",
        ),
        ("a_file", "it is not a directory"),
    ],
)
def test_an_export_dir_that_cannot_take_the_list_is_one_line_naming_it(tmp_path, where, cause):
    source = high_risk_csv(tmp_path / "batch", ["u1"])
    (tmp_path / "a_file").write_text("not a directory")
    target = tmp_path / where
    with pytest.raises(ExportError) as error:
        export_list(source, target, T, VERSION, KEEP)
    message = str(error.value)
    assert message == (
        f"cannot export the high-risk list to {target}: {cause.format(parent=target.parent)}"
    )
    assert "\n" not in message and not (tmp_path / "missing").exists()


def test_the_manifest_is_rewritten_to_describe_a_scrubbed_latest_list(tmp_path):
    export(tmp_path, T, ["u1", "u2", "u3"])
    folder = tmp_path / "export"
    assert not refresh_manifest(folder), "nothing changed: not rewritten"
    before = json.loads((folder / MANIFEST_FILE).read_text())

    assert scrub_csv(folder / LATEST_FILE, frozenset({"u2"})) == 1
    assert refresh_manifest(folder)

    after = json.loads((folder / MANIFEST_FILE).read_text())
    assert after["rows"] == 2
    assert after["sha256"] == hashlib.sha256((folder / LATEST_FILE).read_bytes()).hexdigest()
    assert {k: v for k, v in after.items() if k not in ("rows", "sha256")} == {
        k: v for k, v in before.items() if k not in ("rows", "sha256")
    }
    assert not refresh_manifest(tmp_path / "never-exported")


def test_the_job_pushes_the_rows_it_exported_and_nothing_when_it_did_not_export():
    names = {s.name: s.value for s in batch_samples(_result())}
    assert "churn_batch_exported_rows" not in names
    exported = Export(Path("/export/high_risk_2026-05-02.csv"), 31, latest=True)
    names = {s.name: s.value for s in batch_samples(_result(exported=exported))}
    assert names["churn_batch_exported_rows"] == 31
    assert "exported" not in _result(exported=exported).run_record()


# The setting.
def test_the_export_dir_is_off_by_default_and_resolved_like_the_other_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHURN_EXPORT_DIR", raising=False)
    assert get_settings().export_dir is None
    monkeypatch.setenv("CHURN_EXPORT_DIR", "outbox")
    assert get_settings().export_dir == tmp_path / "outbox"


def test_an_unset_export_dir_survives_the_round_trip_through_a_subprocess_environment(
    tmp_path, monkeypatch
):
    """``as_env`` renders None as "": read back, it is no export, not the working dir."""
    monkeypatch.chdir(tmp_path)
    env = get_settings().as_env()
    assert env["CHURN_EXPORT_DIR"] == ""
    monkeypatch.setenv("CHURN_EXPORT_DIR", env["CHURN_EXPORT_DIR"])
    assert get_settings().export_dir is None
