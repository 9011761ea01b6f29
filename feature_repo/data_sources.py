"""Where the offline features live: the day-partitioned Parquet table under the data dir.

The same table is a ``FileSource`` for Feast's DuckDB offline store or a ``SparkSource``
for its Spark store (``CHURN_ENGINE=spark``): the store refuses the other kind, so the
registry holds the one for the engine it was applied with.
"""

from typing import Any

from feast import FileSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

from core.settings import get_settings
from feature_repo.spec import TIMESTAMP_FIELD

SOURCE_NAME = "user_features_source"
_settings = get_settings()
_common: dict[str, Any] = dict(
    name=SOURCE_NAME,
    path=str(_settings.features_path),
    timestamp_field=TIMESTAMP_FIELD,
    description=(
        "Rolling features per user per UTC day; the row for day D is stamped D+1 00:00 UTC "
        "and uses only events before that instant"
    ),
    owner="ml-platform@portal.example",
    tags={"built_by": "churn features build"},
)

if _settings.engine == "spark":
    # No date_partition_column: Feast prunes with date >= (T - TTL).date(), which drops
    # the directory of day D-1 whose rows are stamped D 00:00 = T - TTL, still inside the
    # TTL. Parquet's row-group statistics on event_timestamp skip old days instead.
    user_features_source: DataSource = SparkSource(file_format="parquet", **_common)
else:
    user_features_source = FileSource(file_format=ParquetFormat(), **_common)
