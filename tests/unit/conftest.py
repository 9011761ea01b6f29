"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.synthetic import fit_both_kinds


@pytest.fixture(scope="session")
def trained() -> dict[str, tuple[object, dict]]:
    """Both model kinds fitted on synthetic users (a few seconds, so once per run)."""
    return fit_both_kinds()
