"""Where the offline features live: the day-partitioned Parquet table under the data dir."""

from feast import FileSource
from feast.data_format import ParquetFormat

from churn.settings import get_settings
from feature_repo.spec import TIMESTAMP_FIELD

user_features_source = FileSource(
    name="user_features_source",
    path=str(get_settings().features_path),
    file_format=ParquetFormat(),
    timestamp_field=TIMESTAMP_FIELD,
    description=(
        "Rolling features per user per UTC day; the row for day D is stamped D+1 00:00 UTC "
        "and uses only events before that instant"
    ),
    owner="ml-platform@portal.example",
    tags={"built_by": "churn features build"},
)
