"""``zos-upgrade check``: the daemon's next round, planned and not run.

The same policies, watchers, sources and failed-release memory as the daemon (wiring builds them
with ``check_into``), driven one step each, but over a :class:`PlanningUpgrader`: where the daemon's
upgrader installs, it asks the Upgrader for the transaction's preview (``upgrade/preview.py``).
So a held release, or whatever later policies decide not to apply, is reported exactly as the
daemon would decide it. The sources download the flist files into a temporary folder outside the
state directory (the caller's ``check_into``); the node, its state directory and its block cache
are never written. No recovery runs: an unfinished transaction is reported (the daemon recovers
it first at its next start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from zos_upgrade.daemon.loop import Daemon, NodeParts
from zos_upgrade.daemon.outcome import CheckOutcome
from zos_upgrade.daemon.policy import CheckFailed, Transaction
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.upgrade import UpgradeReport

if TYPE_CHECKING:
    from zos_upgrade.sources import ReleaseSource, Target
    from zos_upgrade.upgrade import Upgrader
    from zos_upgrade.upgrade.preview import Preview

__all__ = ["EXIT_NOTHING", "EXIT_UPDATE", "NodeCheck", "PlanningUpgrader", "check_node"]

log = logging.getLogger(__name__)

C = TypeVar("C")
EXIT_NOTHING = 0   # nothing to do: up to date, or every candidate held back
EXIT_ERROR = 1     # the check could not look, or the next round would refuse or fail
EXIT_UPDATE = 100  # a transaction would run and passes every check made here (dnf check-update)


class PlanningUpgrader:
    """An UpgraderPort that plans instead of installing; the previews it made, in order."""

    def __init__(self, upgrader: Upgrader) -> None:
        self.upgrader = upgrader
        self.previews: list[Preview] = []

    async def recover(self) -> str | None:
        raise ZosUpgradeError("internal: check never recovers the node")

    def sync_boot_files(self) -> None:
        raise ZosUpgradeError("internal: check never writes the boot files")

    async def install_from(self, source: ReleaseSource[C], candidate: C, target: Target) -> UpgradeReport:
        return self._took(await self.upgrader.preview_from(source, candidate, target))

    async def uninstall_binary(self, fqdn: str) -> UpgradeReport:
        return self._took(await self.upgrader.preview_uninstall(fqdn))

    def _took(self, preview: Preview) -> UpgradeReport:
        self.previews.append(preview)
        report = UpgradeReport("boot" if preview.key == "boot" else
                               "bin-install" if preview.to_version else "bin-uninstall",
                               preview.from_version, preview.to_version)
        return report


class _Looking(Daemon):
    """The policies' DaemonContext of a check: what the node runs (the daemon's own reading of the
    boot files), and transactions that only plan."""

    def __init__(self, parts: NodeParts) -> None:
        super().__init__(parts)
        self.errors: list[str] = []

    async def transaction(self, what: str, call: Transaction, *, to_version: str | None,
                          release: str | None = None) -> CheckOutcome:
        try:
            await call()
        except ZosUpgradeError as exc:  # the source could not fetch or verify the flist file
            return CheckOutcome(self.now(), "error", str(self.current_version()),
                                f"{what}: {type(exc).__name__}: {exc}")
        return CheckOutcome(self.now(), "upgraded", str(self.current_version()))


@dataclass
class NodeCheck:
    """What the next round would do. ``held``: candidates a policy would not apply, and why."""

    current_version: str
    previews: list[Preview] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    recovery: str | None = None  # an unfinished transaction the daemon recovers first

    @property
    def refused(self) -> list[str]:
        """Why transactions of the next round would be refused (compatibility, plan, preflight)."""
        out = [f"{p.key} {p.to_version}: {p.refused}" for p in self.previews if p.refused]
        out += [f"{p.key} {p.to_version}: preflight {name}: {why}" for p in self.previews
                for name, why in p.preflight.items() if why != "ok"]
        return out

    @property
    def exit_code(self) -> int:
        if self.errors or self.refused or self.recovery:
            return EXIT_ERROR
        return EXIT_UPDATE if self.previews else EXIT_NOTHING


async def check_node(parts: NodeParts, planner: PlanningUpgrader) -> NodeCheck:
    """One step of every policy over ``planner`` (the parts wiring built with ``check_into``)."""
    looking = _Looking(parts)
    result = NodeCheck(current_version=str(looking.current_version()))
    journal = planner.upgrader.journal
    try:
        record = journal.load()
    except ZosUpgradeError as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        return result
    if record is not None:
        result.recovery = (f"an unfinished transaction ({record.kind} {record.from_version or 'nothing'} -> "
                           f"{record.to_version or 'uninstall'}, phase {record.phase.value}) is recovered "
                           "first at the daemon's next start")
    for policy in parts.policies:
        policy.start(looking)
        try:
            outcome = await policy.step(looking)
        except CheckFailed as exc:
            result.errors.append(str(exc))
            continue
        if outcome is None or outcome.result in ("upgraded", "up-to-date"):
            continue
        (result.errors if outcome.result == "error" else result.held).append(outcome.detail)
    result.previews = list(planner.previews)
    log.debug("check done", extra={"previews": len(result.previews), "held": len(result.held),
                                   "errors": len(result.errors)})
    return result
