"""Forget users in the online store: each one's Redis key deleted, named and reached as
Feast's own Redis store names and reaches it.

The key is Feast's (``RedisOnlineStore._generate_redis_keys_for_entities``: the serialized
entity key, then the project), the client Feast's own for the filled feature_store.yaml (a
single server or a cluster, its password and TLS), so the key deleted is the one every
reader (the API, ``get_online_features``, ``feast serve``) reads, whichever writer wrote it
(``feature_repo.online_writer`` writes Feast's layout byte for byte). One key per user holds
every feature view's fields: deleting it forgets the user whole.

A server that persists (an RDB snapshot, an append-only file) still holds the deleted keys
on disk until it next saves or rewrites; it is asked to do so now (``BGSAVE``,
``BGREWRITEAOF``): a server that refuses (a managed Redis without CONFIG) is named in the
answer, and drops them at its own next save.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from core.settings import Settings
from feature_repo.spec import ENTITY_KEY
from feature_repo.store import repo_config


@dataclass(frozen=True)
class OnlineErasure:
    """Keys deleted, and what became of the server's files on disk."""

    keys: int
    persistence: str


def forget_online(settings: Settings, user_ids: list[str]) -> OnlineErasure:
    """Delete the users' keys from the online store; a Redis error propagates."""
    config = repo_config(settings)
    store = RedisOnlineStore()
    entities = [EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=u)])
                for u in user_ids]  # fmt: skip
    keys = store._generate_redis_keys_for_entities(config, entities)
    client = store._get_client(config.online_store)
    try:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            deleted = sum(pipe.execute())
        persistence = (
            "a cluster: each node drops the keys from its files at its next save"
            if settings.redis_cluster
            else refresh_persistence(client)
        )
    finally:
        client.close()
    return OnlineErasure(deleted, persistence)


def refresh_persistence(client: redis.Redis) -> str:
    """Ask a persisting server to write its files again without the deleted keys; what it
    was asked, or why not (never raises)."""
    try:
        # The ignores: redis-py types every reply as Awaitable | Any, its sync client's too.
        snapshot = bool(client.config_get("save").get("save"))  # type: ignore[union-attr]
        append_only = client.config_get("appendonly").get("appendonly") == "yes"  # type: ignore[union-attr]
        asked = []
        if snapshot:
            client.bgsave(schedule=True)
            asked.append("snapshot rewritten (BGSAVE)")
        if append_only:
            client.bgrewriteaof()
            asked.append("append-only file rewritten (BGREWRITEAOF)")
    except redis.RedisError as exc:
        return f"not asked to rewrite its files ({exc}): they drop the keys at its next save"
    return "; ".join(asked) or "no persistence: nothing on disk"
