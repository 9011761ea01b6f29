"""Monitoring: drift, realized performance, online/offline skew, and the retraining loop."""
