"""Raw events in → validated tables → daily table → rolling features (Parquet)."""
