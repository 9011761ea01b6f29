"""Labels → point-in-time training set (Feast) → models → the registry (``served``) → promotion."""
