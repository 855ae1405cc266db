"""Fixtures shared by every test package; each package keeps its own in its own conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("fault", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("default")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """The golden files copied from upstream tools (see tests/data/README.md)."""
    return DATA
