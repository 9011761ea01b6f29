"""What a served model is, for everything that serves it: the registry (model files, metadata,
the production alias), the model card (its metadata, typed), the population it answers for,
the risk bands and the outreach arms. Below training, the API and the batch; it imports only
the core and the feature specification, and neither scikit-learn nor training's SQL."""
