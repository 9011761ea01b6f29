"""The name of the feature service churn models are trained and served on, written once.

One FeatureService per model version is the contract between training and serving:
``feature_services.py`` defines it in Feast, training asks Feast for its features and
records its name in each model's metadata, the API serves the features it names, and the
load benchmark asks for it. Plain Python, no Feast import: any layer may read it.
"""

FEATURE_SERVICE = "churn_model_v1"
