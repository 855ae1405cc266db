"""The rollout package's errors: a bad plan, a bad window, a FleetLock server that refuses or is away."""

from __future__ import annotations

from zos_upgrade.errors import ZosUpgradeError

__all__ = ["RolloutError"]


class RolloutError(ZosUpgradeError):
    """A rollout plan document is invalid (the message names the field and what was expected)."""
