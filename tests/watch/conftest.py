"""Fixtures of the watcher tests: the node tests' real hub server (a child process)."""

from tests.node.conftest import hub

__all__ = ["hub"]
