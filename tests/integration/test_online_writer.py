"""The fast writer against Feast's own materialize, key by key and byte by byte.

One demo world, materialized by Feast's writer and then, after its keys are deleted, by
ours: every key, every field, every value and the keys' TTLs must be the same. The last
day's partition lacks some users, so their newest row is an older one: the rows picked
per user must be Feast's too. Feast then reads what ours wrote.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis

from core import partitions
from core.settings import Settings, get_settings
from feature_repo.feast_cli import apply_definitions
from feature_repo.online_writer import materialize_view
from feature_repo.spec import FEATURE_VIEW
from feature_repo.store import materialize, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
DAYS = 40
END = datetime.combine(START + timedelta(days=DAYS), datetime.min.time(), UTC)


def _dump(settings: Settings) -> dict[bytes, tuple[dict[bytes, bytes], int]]:
    """Every key of the settings' project: its fields and its TTL in seconds."""
    client = redis.Redis.from_url(settings.redis_url)
    keys = client.scan_iter(match=b"*" + settings.feast_project.encode(), count=1000)
    return {key: (client.hgetall(key), client.ttl(key)) for key in keys}


def _drop_some_users_from_the_last_day(settings: Settings) -> int:
    """Rewrite the newest partition without every seventh user; returns how many left it."""
    root = settings.features_path
    [path] = partitions.partition_files(root, partitions.partition_days(root)[-1:])
    table = pq.read_table(path)
    keep = pc.invert(pc.equal(pc.utf8_slice_codeunits(table["user_id"], -1), "7"))
    pq.write_table(table.filter(keep), path)
    return table.num_rows - table.filter(keep).num_rows


@pytest.fixture(scope="module")
def world(tmp_path_factory, isolated_settings):
    settings = isolated_settings(tmp_path_factory.mktemp("writer"), materialize_writer="feast")
    data = generate_demo_data(n_users=400, days=DAYS, seed=3, start=START)
    write_demo_data(data, settings)
    assert run_validation(settings, now=END).passed
    build_user_daily(settings)
    build_rolling_features(settings)
    assert _drop_some_users_from_the_last_day(settings) > 10
    apply_definitions(settings)
    yield settings
    open_store(settings).teardown()  # this project's keys only


@pytest.fixture(scope="module")
def by_feast(world: Settings) -> dict[bytes, tuple[dict[bytes, bytes], int]]:
    """What Feast's own materialize wrote; the keys are deleted again."""
    materialize(world, end=END)
    written = _dump(world)
    redis.Redis.from_url(world.redis_url).delete(*written)
    return written


@pytest.mark.parametrize("whole_keys", [True, False], ids=["restore", "hset"])
def test_the_fast_writer_writes_what_feast_writes(
    world: Settings, by_feast: dict, whole_keys: bool
) -> None:
    fast = get_settings(**(world.model_dump() | {"materialize_writer": "fast"}))
    store = open_store(fast)
    view = store.get_feature_view(FEATURE_VIEW)
    done: list[tuple[int, int]] = []
    since = END - timedelta(days=fast.feature_ttl_days)
    written = materialize_view(store.config, view, since, END, fast,
                               lambda n, total: done.append((n, total)), whole_keys)  # fmt: skip
    ours = _dump(fast)
    redis.Redis.from_url(fast.redis_url).delete(*ours)

    assert written.mode == ("restore" if whole_keys else "hset")
    assert len(by_feast) > 300
    assert ours.keys() == by_feast.keys()
    assert {k: fields for k, (fields, _) in ours.items()} == {
        k: fields for k, (fields, _) in by_feast.items()
    }
    ttl = world.online_key_ttl_days * 86400
    assert all(ttl - 120 < t <= ttl for _, t in [*ours.values(), *by_feast.values()])
    assert done[-1] == (len(ours), len(ours)) == (written.users, written.users)
    assert written.stamps == 2  # the newest day, and the day before for the users it lacks


def test_feast_reads_what_the_fast_writer_wrote(world: Settings) -> None:
    fast = get_settings(**(world.model_dump() | {"materialize_writer": "fast"}))
    since, until = materialize(fast, end=END)
    assert (since, until) == (END - timedelta(days=fast.feature_ttl_days), END)
    store = open_store(fast)
    assert store.get_feature_view(FEATURE_VIEW).most_recent_end_time == END

    table = pq.read_table(
        partitions.partition_files(fast.features_path, [END.date() - timedelta(days=1)])
    )
    row = table.slice(0, 1).to_pylist()[0]
    online = store.get_online_features(
        features=[f"{FEATURE_VIEW}:logins_7d", f"{FEATURE_VIEW}:plan"],
        entity_rows=[{"user_id": row["user_id"]}],
    ).to_dict()
    assert online["logins_7d"] == [row["logins_7d"]]
    assert online["plan"] == [row["plan"]]
