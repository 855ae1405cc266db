"""Hub client fixtures: real hub servers on free loopback ports, the recorded hub's storage."""

from tests.support.hub import golden_root, start_hub

__all__ = ["golden_root", "start_hub"]
