"""Hub server fixtures: our hub on free loopback ports, the recorded hub's storage to serve."""

from tests.support.hub import golden_root, start_hub

__all__ = ["golden_root", "start_hub"]
