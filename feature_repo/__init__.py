"""The Feast repository: one feature specification, entities, sources, views, services."""
