"""The feature view, its schema generated from the one feature specification.

Sibling modules are imported by their top-level names, as ``feast apply``
imports them (it runs inside this directory); importing them as
``feature_repo.*`` too would define every object twice.
"""

from datetime import timedelta

from data_sources import user_features_source
from entities import user
from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from core.settings import get_settings
from feature_repo.spec import FEATURE_VIEW, feature_columns

_FEAST_TYPES = {"int64": Int64, "float64": Float64, "string": String}

_settings = get_settings()

user_activity = FeatureView(
    name=FEATURE_VIEW,
    entities=[user],
    ttl=timedelta(days=_settings.feature_ttl_days),
    schema=[
        Field(name=name, dtype=_FEAST_TYPES[dtype], description=description)
        for name, dtype, description in feature_columns(_settings.windows)
    ],
    source=user_features_source,
    online=True,
    description=(
        f"Engagement, learning, payment and support activity over {_settings.windows} day windows, "
        "recency, tenure and profile"
    ),
    owner="ml-platform@portal.example",
    tags={"windows": ",".join(map(str, _settings.windows))},
)
