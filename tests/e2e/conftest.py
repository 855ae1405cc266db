"""Fixtures of the end-to-end upgrade tests: a real supervisord and a sandbox node with a real hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon_node import Node, sandbox_node
from tests.support.node import Sandbox
from tests.support.supervisord import RunningSupervisord, running_supervisord


@pytest.fixture
def sd() -> Iterator[RunningSupervisord]:
    with running_supervisord() as running:
        yield running


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path)
    with sandbox.serving_hub():
        yield sandbox


@pytest.fixture
def node() -> Iterator[Node]:
    """A sandbox node driven by the real daemon: a real hub, a real supervisord, its TOML config."""
    with sandbox_node() as made:
        yield made
