"""The operator's hold and pause as a policy rule: which transactions the daemon does not start.

One :class:`ControlGate` is shared by every policy (wiring builds it over ``<state>/control.json``,
:mod:`zos_upgrade.node.control`); :meth:`zos_upgrade.daemon.policy.Policy.guarded` asks it before
each transaction, before the failed-release memory. The file is read every time, so ``zos-upgrade
hold`` / ``pause`` reach a running daemon at its next round. A blocked event is not confirmed:
after ``unhold`` / ``resume`` the next round proposes it again.

* paused: nothing is applied (``paused``);
* held at H: no boot release above H (``held``); bins packages are not the node's release and go on;
* a control file that cannot be read: nothing is applied (``error``), as for the memory.
"""

from __future__ import annotations

import logging

from zos_upgrade.daemon.outcome import CheckOutcome
from zos_upgrade.node.control import ControlError, NodeControl
from zos_upgrade.versions import InvalidVersion, parse_version

__all__ = ["ControlGate"]

log = logging.getLogger(__name__)


class ControlGate:
    """Reads the operator's control file and blocks what it forbids."""

    def __init__(self, store: NodeControl) -> None:
        self.store = store

    def blocked(self, what: str, *, to_version: str | None, at: float, version: str) -> CheckOutcome | None:
        """The outcome of NOT running transaction ``what``, or None to go on. ``to_version``: the
        boot release it moves to (None for a bins package)."""
        try:
            state = self.store.load()
        except ControlError as exc:
            log.error("control file unreadable; applying nothing", extra={"error": str(exc)})
            return CheckOutcome(at, "error", version, f"{what}: {exc}")
        if state.pause is not None:
            log.info("paused by the operator; not applied", extra={"what": what, "since": state.pause.at})
            return CheckOutcome(at, "paused", version,
                                f"{what}: not applied, automatic upgrades are paused (`zos-upgrade resume`)")
        hold = state.hold_version()
        if hold is None or to_version is None:
            return None
        try:
            above = parse_version(to_version).compare(hold) > 0
        except InvalidVersion:  # a release whose version we cannot order is not below the hold
            above = True
        if not above:
            return None
        log.info("held by the operator; not applied", extra={"what": what, "to_version": to_version,
                                                              "hold": str(hold)})
        return CheckOutcome(at, "held", version, f"{what}: not applied, the node is held at {hold} "
                                                 "(`zos-upgrade unhold`)")
