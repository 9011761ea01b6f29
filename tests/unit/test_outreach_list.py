"""The newest night's outreach list the API answers ``listed`` and ``arm`` from, on real
assignment files in a temp data dir."""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import date, timedelta

import pandas as pd

from core import partitions
from online_api.outreach_list import OutreachList
from served.arms import (
    ASSIGNMENTS_FILE,
    CONTACT,
    HOLDOUT,
    arms_by_user,
    newest_assignments,
    write_assignments,
)

NIGHT = date(2026, 3, 1)


def _list(arms: dict[str, str]) -> pd.DataFrame:
    """A night's list with the given users and arms (the other columns as the batch has them)."""
    return pd.DataFrame({"user_id": list(arms), "arm": list(arms.values()), "risk_band": "high",
                         "churn_risk": 0.5, "monthly_revenue": 0.0, "model_version": "v"})  # fmt: skip


def test_the_newest_night_with_a_file_is_the_list(make_settings):
    settings = make_settings()
    assert newest_assignments(settings) is None  # no outreach directory: nobody listed
    first = write_assignments(settings, NIGHT, _list({"a": CONTACT}))
    second = write_assignments(settings, NIGHT + timedelta(days=1), _list({"b": HOLDOUT}))
    assert newest_assignments(settings) == (NIGHT + timedelta(days=1), second)
    # A night whose file is not renamed in (yet, or ever) is passed over.
    partitions.partition_dir(settings.outreach_dir, NIGHT + timedelta(days=2)).mkdir()
    assert newest_assignments(settings) == (NIGHT + timedelta(days=1), second)
    assert arms_by_user(first) == {"a": CONTACT}
    assert arms_by_user(second) == {"b": HOLDOUT}


def test_nobody_is_listed_without_an_outreach_directory(make_settings):
    outreach = OutreachList(make_settings())
    outreach.refresh()
    assert outreach.arms() == {}
    assert outreach.night is None
    assert outreach.checks == 1


def test_a_list_is_read_once_and_again_only_when_a_newer_one_lands(make_settings):
    settings = make_settings()
    write_assignments(settings, NIGHT, _list({"a": CONTACT, "b": HOLDOUT}))
    outreach = OutreachList(settings)
    outreach.refresh()
    held = outreach.arms()
    assert (held, outreach.night) == ({"a": CONTACT, "b": HOLDOUT}, NIGHT)
    outreach.refresh()
    assert outreach.arms() is held  # the same file: not read again

    write_assignments(settings, NIGHT + timedelta(days=1), _list({"c": CONTACT}))
    outreach.refresh()
    assert (outreach.arms(), outreach.night) == ({"c": CONTACT}, NIGHT + timedelta(days=1))
    # The same night rerun: its file is replaced by rename, and read again.
    write_assignments(settings, NIGHT + timedelta(days=1), _list({"c": HOLDOUT, "d": CONTACT}))
    outreach.refresh()
    assert outreach.arms() == {"c": HOLDOUT, "d": CONTACT}
    shutil.rmtree(settings.outreach_dir)
    outreach.refresh()
    assert (outreach.arms(), outreach.night) == ({}, None)


def test_an_unreadable_list_keeps_the_one_held_and_is_logged_once(make_settings, caplog):
    settings = make_settings()
    write_assignments(settings, NIGHT, _list({"a": CONTACT}))
    outreach = OutreachList(settings)
    outreach.refresh()
    broken = partitions.partition_dir(settings.outreach_dir, NIGHT + timedelta(days=1))
    broken.mkdir()
    (broken / ASSIGNMENTS_FILE).write_bytes(b"not parquet")
    with caplog.at_level(logging.ERROR, logger="online_api.outreach_list"):
        outreach.refresh()
        outreach.refresh()
    assert (outreach.arms(), outreach.night) == ({"a": CONTACT}, NIGHT)
    assert caplog.text.count("cannot read the outreach list") == 1
    write_assignments(settings, NIGHT + timedelta(days=1), _list({"b": HOLDOUT}))
    outreach.refresh()  # the night's batch reran: its new file is read
    assert outreach.arms() == {"b": HOLDOUT}


def test_watch_picks_a_new_list_up_in_the_background(make_settings):
    settings = make_settings(outreach_reload_seconds=0.01)
    outreach = OutreachList(settings)

    async def write_while_watching() -> None:
        watcher = asyncio.create_task(outreach.watch())
        try:
            write_assignments(settings, NIGHT, _list({"a": HOLDOUT}))
            for _ in range(500):  # the bound only turns a hang into a failure
                if outreach.arms():
                    break
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()

    asyncio.run(write_while_watching())
    assert outreach.arms() == {"a": HOLDOUT}
