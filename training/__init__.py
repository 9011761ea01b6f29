"""Labels → point-in-time training set (Feast) → models → registry → promotion."""
