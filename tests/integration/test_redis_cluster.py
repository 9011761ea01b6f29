"""The online store on a Redis Cluster (CHURN_REDIS_CLUSTER=true): three redis-server nodes
on loopback ports of their own, the slots spread over them, started and stopped here.

Materialize writes through Feast's cluster client, the keys land on every node, and both
the jobs' reads and the API's async reads return what the offline table holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import redis

from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import materialize, online_feature_rows, open_store
from online_api.online_features import OnlineFeatures
from tests.integration.services import free_port, wait_until
from tests.integration.world import TODAY, build_world
from training.dataset import FEATURE_SERVICE, feature_refs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
        reason="redis-server and redis-cli are not installed (make system-deps)",
    ),
]

NODES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Ports of a three-master Redis Cluster that keeps nothing on disk but its node files."""
    root = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(2 * NODES)]
    ports, bus_ports = ports[:NODES], ports[NODES:]
    servers = []
    try:
        for port, bus in zip(ports, bus_ports, strict=True):
            node = root / str(port)
            node.mkdir()
            # The bus port explicitly: the default, port + 10000, is past 65535 for high ports.
            servers.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(port), "--cluster-port", str(bus),
                     "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
                     "--dir", str(node), "--logfile", str(node / "redis.log")],
                    stdout=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port, server in zip(ports, servers, strict=True):
            check = _answering(port, server, root / str(port))
            wait_until(f"redis-server on {port}", check, 30, ignore=(redis.RedisError,))
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        first = redis.Redis(port=ports[0])
        wait_until(
            "the Redis Cluster's state to be ok",
            lambda: first.cluster("info")["cluster_state"],
            30,
            done=lambda state: state == "ok",
            ignore=(redis.RedisError,),
        )
        yield ports
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=10)


def _answering(port: int, server: subprocess.Popen, node: Path) -> Callable[[], bool]:
    """A ping of the node on ``port``; fails fast with its log if its redis-server exited."""
    client = redis.Redis(port=port)

    def check() -> bool:
        if server.poll() is not None:
            log = (node / "redis.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"redis-server on {port} exited with {server.returncode}:\n{log}")
        return client.ping()

    return check


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory, isolated_settings):
    settings = isolated_settings(
        tmp_path_factory.mktemp("cluster-world"),
        redis_url=f"redis://127.0.0.1:{cluster[0]}",
        redis_cluster=True,
    )
    build_world(settings, users=120, days=60, online=False)
    materialize(settings, end=TODAY)
    try:
        yield settings
    finally:
        open_store(settings).teardown()


def _newest_offline(settings) -> pd.DataFrame:
    frame = pd.read_parquet(settings.features_path)
    frame = frame[frame[TIMESTAMP_FIELD] <= TODAY]
    return frame.sort_values(TIMESTAMP_FIELD).groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)


def test_materialize_spreads_the_users_over_every_node(world, cluster):
    sizes = [redis.Redis(port=port).dbsize() for port in cluster]
    assert all(size > 0 for size in sizes), sizes
    assert sum(sizes) == len(_newest_offline(world))


def test_jobs_and_the_api_read_what_the_offline_table_holds(world):
    store = open_store(world)
    refs = feature_refs(store, FEATURE_SERVICE)
    names = [ref.split(":", 1)[1] for ref in refs]
    expected = _newest_offline(world)[names].sort_index()
    users = list(expected.index)

    rows = pd.DataFrame(online_feature_rows(world, users, refs)).set_index(ENTITY_KEY)
    pd.testing.assert_frame_equal(rows[names], expected, check_dtype=False)

    online = OnlineFeatures(world)  # the API's reader: async cluster client, short timeouts

    async def fetch():
        try:
            return await online.fetch(users, online.plan(FEATURE_SERVICE, refs))
        finally:
            await online.aclose()

    served = pd.DataFrame([row.values for row in asyncio.run(fetch())], index=users)
    pd.testing.assert_frame_equal(served[names], expected, check_dtype=False, check_names=False)
