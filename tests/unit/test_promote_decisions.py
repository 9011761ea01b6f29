"""Gate decisions are one append-only history; the old one-file-per-decision layout is
carried over by the first promotion after an upgrade, and is read as it is until then."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from served import registry
from training.promote import decisions, promote
from training.train import VALIDATION_ROWS

NOW = datetime(2026, 11, 26, 4, 48, tzinfo=UTC)
VERSION = "20261126T044800Z-1a2b3c4d"
GOOD = {"pr_auc": 0.382, "pr_auc_skill": 0.311, "roc_auc": 0.844, "base_rate": 0.103}
REFERENCES = {"recency": {"pr_auc": 0.364, "roc_auc": 0.823, "base_rate": 0.103}}
# As training.promote wrote them before decisions.jsonl: <stamp>-<candidate>-<id>.json.
LEGACY = {
    "20261101T040000123456Z-v1-a1b2c3.json": {"candidate": "v1", "promote": True,
                                               "decided_at": "20261101T040000123456Z"},
    "20261102T040000000000Z-v2-d4e5f6.json": {"candidate": "v2", "promote": False,
                                               "decided_at": "20261102T040000000000Z"},
}  # fmt: skip


@pytest.fixture
def settings(make_settings):
    settings = make_settings()
    metadata = {"created_at": NOW.isoformat(), "metrics": GOOD, "references": REFERENCES}
    path = registry.save_model(settings.models_dir, VERSION, {"stub": "model"}, metadata)
    pd.DataFrame({"user_id": ["u1"]}).to_parquet(path / VALIDATION_ROWS)
    return settings


def _write_legacy(settings) -> None:
    folder = settings.models_dir / "decisions"
    folder.mkdir()
    for name, record in reversed(LEGACY.items()):
        (folder / name).write_text(json.dumps(record, indent=2))


def test_each_decision_is_a_line_of_the_history(settings):
    first = promote(settings, VERSION, now=NOW)
    again = promote(settings, VERSION, now=NOW)  # already production: refused, recorded too
    assert (first.decision.promote, again.decision.promote) == (True, False)
    recorded = decisions(settings.models_dir)
    assert [(d["candidate"], d["promote"]) for d in recorded] == [(VERSION, True), (VERSION, False)]
    assert recorded[0]["decided_at"] == NOW.isoformat()
    assert recorded[0]["candidate_metrics"] == GOOD and recorded[0]["references"] == REFERENCES
    lines = (settings.models_dir / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == recorded


def test_old_decision_files_are_read_then_carried_over(settings):
    _write_legacy(settings)
    old = [
        {"candidate": "v1", "promote": True, "decided_at": "2026-11-01T04:00:00.123456+00:00"},
        {"candidate": "v2", "promote": False, "decided_at": "2026-11-02T04:00:00+00:00"},
    ]
    assert decisions(settings.models_dir) == old  # before any new decision: as they are

    promote(settings, VERSION, now=NOW)
    recorded = decisions(settings.models_dir)
    assert recorded[:2] == old
    assert [d["candidate"] for d in recorded] == ["v1", "v2", VERSION]
    assert not (settings.models_dir / "decisions").exists()


def test_an_unreadable_old_decision_stops_the_promotion_before_any_switch(settings):
    _write_legacy(settings)
    broken = settings.models_dir / "decisions" / "20261103T000000000000Z-v3-000000.json"
    broken.write_text("{half")
    with pytest.raises(registry.RegistryError, match=f"promotion decision {broken}"):
        promote(settings, VERSION, now=NOW)
    assert registry.production(settings.models_dir) is None
    assert not (settings.models_dir / "decisions.jsonl").exists()
    assert len(list((settings.models_dir / "decisions").iterdir())) == 3
