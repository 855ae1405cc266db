"""How a round or a transaction ended: the result names ``zos-upgrade status`` shows, worst first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from zos_upgrade.errors import ZosUpgradeError

if TYPE_CHECKING:
    from zos_upgrade.upgrade import UpgradeReport

__all__ = ["SEVERITY", "CheckOutcome", "Result", "classify_failure", "merge_outcomes", "report_fields"]

Result = Literal["rollback-incomplete", "error", "failed", "rolled-back", "held", "paused", "waiting",
                 "upgraded", "up-to-date"]
# worst first: a round that ran several transactions shows the worst (the names of node.state.CheckResult).
# "held": a release that failed here before, or one above the operator's hold, was not tried (not a
# failure of this round); "paused": the operator paused automatic upgrades (`zos-upgrade pause`);
# "waiting": the rollout strategy does not start it yet (outside the maintenance windows, or the
# phased rollout has not reached this node's bucket): proposed again at the next round
SEVERITY: tuple[Result, ...] = ("rollback-incomplete", "error", "failed", "rolled-back", "held", "paused",
                                "waiting", "upgraded", "up-to-date")
_FAILED: frozenset[Result] = frozenset(("rollback-incomplete", "error", "failed", "rolled-back"))


@dataclass
class CheckOutcome:
    """What one round (or one event) led to: the line ``zos-upgrade status`` shows."""

    at: float
    result: Result
    version: str
    detail: str = ""
    reports: list[UpgradeReport] = field(default_factory=list)
    # the transaction step that failed (UpgradeFailed.step): what the failed-release memory judges
    failed_step: str = ""

    @property
    def failed(self) -> bool:
        return self.result in _FAILED

    @property
    def applied(self) -> bool:
        """Nothing is left to do for the event: confirm it (a held or failed event is not)."""
        return self.result in ("upgraded", "up-to-date")


def merge_outcomes(outcomes: Sequence[CheckOutcome], *, at: float, version: str) -> CheckOutcome:
    """One status line for several outcomes: the worst result wins, details and reports add up."""
    if not outcomes:
        return CheckOutcome(at, "up-to-date", version)
    worst = min(outcomes, key=lambda o: SEVERITY.index(o.result))
    return CheckOutcome(at, worst.result, version, "; ".join(o.detail for o in outcomes if o.detail),
                        [r for o in outcomes for r in o.reports])


def classify_failure(exc: ZosUpgradeError) -> tuple[Result, str]:
    """(result, detail) of a transaction that raised.

    Refused (by the source or by the upgrader before any change) is ``failed``; rolled back is
    ``rolled-back``; anything else — the rollback itself could not finish, or the upgrader refused
    to start over an unfinished journal — is ``rollback-incomplete``: the journal stays and the next
    start retries it.
    """
    from zos_upgrade.sources import ReleaseRejected
    from zos_upgrade.upgrade import ReleaseRefused, RolledBack, UpgradeFailed

    if isinstance(exc, UpgradeFailed):
        detail = f"{exc.reason} (at step {exc.step})" if exc.step else exc.reason
    else:
        detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (ReleaseRefused, ReleaseRejected)):
        return "failed", detail
    if isinstance(exc, RolledBack):
        return "rolled-back", detail
    return "rollback-incomplete", detail


_REPORT_FIELDS = ("kind", "bytes_downloaded", "blocks_fetched", "blocks_from_cache", "release_bytes",
                  "files_added", "files_replaced", "files_removed", "services_restarted", "phases")


def report_fields(report: UpgradeReport | None) -> dict[str, object]:
    """The upgrader's report as log fields (what ``zos-upgrade demo`` and operators read back)."""
    out: dict[str, object] = {}
    if report is None:
        return out
    for name in _REPORT_FIELDS:
        value: object = getattr(report, name, None)
        if value is None:
            continue
        if isinstance(value, dict):
            value = {str(k): round(v, 3) if isinstance(v, float) else v for k, v in value.items()}
        elif isinstance(value, (list, tuple, set, frozenset)):
            value = sorted(str(v) for v in value)
        out[name] = value
    return out
