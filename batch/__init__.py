"""The nightly batch: everyone in the population scored, and the retention team's list."""
