"""The errors of the upgrade transaction, designed for the daemon that catches them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade.errors import ZosUpgradeError

if TYPE_CHECKING:
    from zos_upgrade.upgrade.upgrader import UpgradeReport

__all__ = [
    "HookFailed",
    "JournalError",
    "PlanRefused",
    "ProbationFailed",
    "RestartNeeded",
    "UnsafePath",
    "UpgradeError",
    "UpgradeFailed",
]


class UpgradeError(ZosUpgradeError):
    """Base of the upgrade layer's errors."""


class RestartNeeded(UpgradeError):
    """The upgrader replaced its own program (Go ``ErrRestartNeeded``).

    The journal records it; the process must exit and let its supervisor restart it. The new program
    finds the journal and continues the transaction (``Upgrader.recover``).
    """


class UpgradeFailed(UpgradeError):
    """A transaction failed at ``step``; ``rolled_back`` says the node is back on the old release.

    ``refused`` says the release was refused before anything on the node changed (fetch or plan),
    so there was nothing to roll back. ``report`` is the transaction's partial ``UpgradeReport`` when
    it got that far (bytes downloaded, blocks, time of each phase up to and including the failing
    one); None otherwise.
    """

    def __init__(self, reason: str, *, step: str, rolled_back: bool, refused: bool = False,
                 report: UpgradeReport | None = None) -> None:
        if refused:
            state = "release refused; node unchanged"
        else:
            state = "rolled back to the old release" if rolled_back else "NOT rolled back"
        super().__init__(f"upgrade failed at {step}: {reason} ({state})")
        self.reason = reason
        self.step = step
        self.rolled_back = rolled_back or refused
        self.refused = refused
        self.report = report


class JournalError(UpgradeError):
    """The journal is unreadable or an illegal transition was asked for."""


class PlanRefused(UpgradeError):
    """The release cannot be applied as planned (a type change, a release without services...)."""


class UnsafePath(UpgradeError):
    """A path would resolve outside the node root or the state directory."""


class HookFailed(UpgradeError):
    """A hook was not executable, exited non-zero, or ran past its timeout."""


class ProbationFailed(UpgradeError):
    """A restarted service did not stay running (or a oneshot did not succeed) during probation."""
