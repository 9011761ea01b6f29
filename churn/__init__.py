"""Churn prediction for an e-learning portal: settings, CLI and shared plumbing."""
