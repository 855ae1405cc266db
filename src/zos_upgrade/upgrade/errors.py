"""The errors of the upgrade transaction, designed for the daemon that catches them."""

from __future__ import annotations

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.upgrade.report import UpgradeReport

__all__ = [
    "HookFailed",
    "JournalError",
    "PlanRefused",
    "PreflightFailed",
    "ProbationFailed",
    "ProgramProbeFailed",
    "ReleaseRefused",
    "RestartNeeded",
    "RollbackIncomplete",
    "RollbackRefused",
    "RolledBack",
    "UnsafePath",
    "UpgradeError",
    "UpgradeFailed",
]


class UpgradeError(ZosUpgradeError):
    """Base of the upgrade layer's errors."""


class RollbackRefused(UpgradeError):
    """``zos-upgrade rollback`` cannot start: no previous release, or its kept flist file is gone or
    changed. Nothing on the node changed."""


class RestartNeeded(UpgradeError):
    """The upgrader replaced its own program (Go ``ErrRestartNeeded``).

    The journal records it; the process must exit and let its supervisor restart it. The new program
    finds the journal and continues the transaction (``Upgrader.recover``).
    """


class UpgradeFailed(UpgradeError):
    """A transaction failed at ``step`` for ``reason``; the subclass says where the node is now.

    ``report`` is the transaction's partial ``UpgradeReport`` when it got that far (bytes
    downloaded, blocks, time of each phase up to and including the failing one); None otherwise.
    """

    outcome = "outcome unknown"

    def __init__(self, reason: str, *, step: str, report: UpgradeReport | None = None) -> None:
        super().__init__(f"upgrade failed at {step}: {reason} ({self.outcome})")
        self.reason = reason
        self.step = step
        self.report = report


class ReleaseRefused(UpgradeFailed):
    """Refused before anything on the node changed (fetch or plan): there was nothing to roll back."""

    outcome = "release refused; node unchanged"


class RolledBack(UpgradeFailed):
    """The transaction failed after it began changing the node; the node is back on the old release."""

    outcome = "rolled back to the old release"


class RollbackIncomplete(UpgradeFailed):
    """The rollback itself failed: the journal stays and the next start (``recover``) tries again."""

    outcome = "NOT rolled back"


class JournalError(UpgradeError):
    """The journal is unreadable or an illegal transition was asked for."""


class JournalUnreadable(JournalError):
    """``journal.json`` exists but is truncated, corrupt or too large: recovery cannot tell what the
    interrupted transaction changed (``zos-upgrade recover --from-backup`` is the way out)."""


class PlanRefused(UpgradeError):
    """The release cannot be applied as planned (a type change, a release without services...)."""


class PreflightFailed(UpgradeError):
    """A check before the transaction failed: the supervisor, the disk room or the trust material."""


class UnsafePath(UpgradeError):
    """A path would resolve outside the node root or the state directory."""


class HookFailed(UpgradeError):
    """A hook was not executable, exited non-zero, or ran past its timeout."""


class ProbationFailed(UpgradeError):
    """A restarted service did not stay running (or a oneshot did not succeed) during probation."""


class ProgramProbeFailed(UpgradeError):
    """The upgrader's new program, installed by the self step, did not start: it did not write its
    start-up marker within the deadline (``probe.py``). The self step fails and rolls back, which
    puts the previous program back."""
