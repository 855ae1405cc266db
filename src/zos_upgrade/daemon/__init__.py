"""The node's upgrade daemon: per-source policy objects, the loop that runs them, and its process.

``zos_upgrade.daemon`` stays light to import (the CLI reads its exit codes at start-up): the
layers below are imported where they are used, and :mod:`.wiring` builds them from the config.
"""

from zos_upgrade.daemon.loop import EXIT_FAILED, EXIT_OK, EXIT_RESTART, Daemon, NodeParts
from zos_upgrade.daemon.outcome import CheckOutcome
from zos_upgrade.daemon.policy import BinsPolicy, BootPolicy, Policy, ReleasePolicy
from zos_upgrade.daemon.process import build_parts, run_daemon

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_RESTART",
    "BinsPolicy",
    "BootPolicy",
    "CheckOutcome",
    "Daemon",
    "NodeParts",
    "Policy",
    "ReleasePolicy",
    "build_parts",
    "run_daemon",
]
