"""Feature services: the contract between a model version's training and its serving."""

from feast import FeatureService
from features import user_activity

from feature_repo.service_name import FEATURE_SERVICE

churn_model_v1 = FeatureService(
    name=FEATURE_SERVICE,
    features=[user_activity],
    description="Every user_activity feature; what churn models are trained and served on",
    owner="ml-platform@portal.example",
    tags={"model": "churn"},
)
