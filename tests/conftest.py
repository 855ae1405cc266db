"""Fixtures shared by every test package; each package keeps its own in its own conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.upstream import HubProcess, ZdbServer, running_0hub, running_zdb, tool

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


# The real 0-OS tools (built by `make tools`; see tests/support/upstream.py)
@pytest.fixture
def real_zdb(tmp_path: Path) -> Iterator[ZdbServer]:
    """A real zdb in user mode on a free port, data and index under tmp."""
    with running_zdb(tmp_path / "zdb") as server:
        yield server


@pytest.fixture
def three_zdbs(tmp_path: Path) -> Iterator[list[ZdbServer]]:
    """Three real zdb processes, each with its own data and index."""
    with running_zdb(tmp_path / "zdb-a") as a, running_zdb(tmp_path / "zdb-b") as b, \
            running_zdb(tmp_path / "zdb-c") as c:
        yield [a, b, c]


@pytest.fixture
def zflist_bin() -> Path:
    """The real zflist (0-flist 2.3.0), built in release mode."""
    return tool("zflist")


@pytest.fixture
def real_0hub(tmp_path: Path, real_zdb: ZdbServer) -> Iterator[HubProcess]:
    """The real 0-hub on a free port over ``real_zdb``, authentication off, storage under tmp."""
    with running_0hub(tmp_path / "0hub", real_zdb) as hub:
        yield hub
