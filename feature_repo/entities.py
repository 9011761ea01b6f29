"""The one entity: a learner of the portal."""

from feast import Entity, ValueType

from feature_repo.spec import ENTITY_KEY

user = Entity(
    name="user",
    join_keys=[ENTITY_KEY],
    value_type=ValueType.STRING,
    description="A learner of the portal, identified by the portal's user id",
    owner="ml-platform@portal.example",
    tags={"domain": "engagement"},
)
