"""Fixtures of the watcher tests: the node tests' real hub server (a child process) and hostile hub."""

from tests.node.conftest import hostile, hostile_server, hub

__all__ = ["hostile", "hostile_server", "hub"]
