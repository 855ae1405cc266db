"""The upgrade transaction: a verified release -> installed crash-safely (Flister, Upgrader, crash points).

The modules underneath are the machinery: ``journal`` (the persisted state machine), ``plan`` (what
changes), ``manifest`` (what is installed), ``nodefs`` (confined file operations), ``hooks``,
``services`` (supervisor steps and probation), ``datapaths`` (node data the hooks may change, declared
in a release's ``hooks.paths``: saved before the first hook, restored on rollback), ``crash`` (named
crash points), ``report`` (what a transaction did), ``errors`` (how it failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
    from zos_upgrade.upgrade.context import DisruptGate
    from zos_upgrade.upgrade.crash import CRASH_ENV, CRASH_POINTS, crash_point
    from zos_upgrade.upgrade.errors import (
        HookFailed,
        JournalUnreadable,
        PlanRefused,
        PreflightFailed,
        ProbationFailed,
        ReleaseRefused,
        RestartNeeded,
        RollbackIncomplete,
        RolledBack,
        UnsafePath,
        UpgradeError,
        UpgradeFailed,
    )
    from zos_upgrade.upgrade.flister import Flister, Mount, MountError
    from zos_upgrade.upgrade.manifest import Manifest
    from zos_upgrade.upgrade.report import UpgradeReport
    from zos_upgrade.upgrade.upgrader import Upgrader

__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "DisruptGate",
    "Flister",
    "HookFailed",
    "JournalUnreadable",
    "Manifest",
    "Mount",
    "MountError",
    "PlanRefused",
    "PreflightFailed",
    "ProbationFailed",
    "ReleaseRefused",
    "RestartNeeded",
    "RollbackIncomplete",
    "RolledBack",
    "UnsafePath",
    "UpgradeError",
    "UpgradeFailed",
    "UpgradeReport",
    "Upgrader",
    "crash_point",
]

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "DisruptGate": "context",
    "CRASH_ENV": "crash",
    "CRASH_POINTS": "crash",
    "crash_point": "crash",
    "HookFailed": "errors",
    "JournalUnreadable": "errors",
    "PlanRefused": "errors",
    "PreflightFailed": "errors",
    "ProbationFailed": "errors",
    "ReleaseRefused": "errors",
    "RestartNeeded": "errors",
    "RollbackIncomplete": "errors",
    "RolledBack": "errors",
    "UnsafePath": "errors",
    "UpgradeError": "errors",
    "UpgradeFailed": "errors",
    "Flister": "flister",
    "Mount": "flister",
    "MountError": "flister",
    "Manifest": "manifest",
    "UpgradeReport": "report",
    "Upgrader": "upgrader",
})
