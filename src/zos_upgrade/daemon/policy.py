"""The daemon's policy per followed thing: the boot link, the bins repository, the release server.

Each policy owns its watcher and its release source and answers three questions, one method each:
``check`` (is something new?), ``apply`` (what transactions does it take?) and ``confirm`` (the
transactions succeeded: never propose this again). The Upgrader decides *how* a release is
installed; a policy decides *whether* and *which*. The failed-release memory
(:mod:`zos_upgrade.daemon.memory`, one shared by every policy) is such a rule: each transaction
goes through :meth:`Policy.guarded`, which holds back a release that failed here before and
remembers one that fails now. The operator's hold and pause (:mod:`zos_upgrade.daemon.control`,
one gate shared by every policy) are another such rule, asked first; the rollout strategy's gates
(:mod:`zos_upgrade.daemon.strategy`: maintenance windows, a phased rollout plan) come next, each
with the same ``blocked`` question, then the memory.

The loop (:mod:`zos_upgrade.daemon.loop`) sees only :class:`Followed`: ``start`` once the node is
recovered, then ``step`` (check, apply, confirm on success) until nothing is new.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from zos_upgrade.daemon.control import ControlGate
from zos_upgrade.daemon.feedback import FleetFeedback
from zos_upgrade.daemon.memory import Candidate, ReleaseMemory, flist_identity, release_identity
from zos_upgrade.daemon.outcome import CheckOutcome, merge_outcomes
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.versions import ZERO, Version

if TYPE_CHECKING:
    from zos_upgrade.daemon.ports import UpgraderPort, WatcherPort
    from zos_upgrade.hub.flists import RepoFList
    from zos_upgrade.node.events import FListEvent, ReleaseEvent, RepoEvent
    from zos_upgrade.sources import ReleaseSource
    from zos_upgrade.upgrade import UpgradeReport

__all__ = ["BinsPolicy", "BootPolicy", "CheckFailed", "DaemonContext", "Followed", "Gate", "Policy",
           "ReleasePolicy"]

log = logging.getLogger(__name__)

E = TypeVar("E")
W = TypeVar("W")
Transaction = Callable[[], Awaitable["UpgradeReport"]]


class CheckFailed(ZosUpgradeError):
    """A policy's look at its source failed (hub down, bad answer); the next round looks again."""

    def __init__(self, policy: str, cause: Exception) -> None:
        super().__init__(f"{policy} check: {type(cause).__name__}: {cause}")
        self.policy = policy
        self.cause = cause


class Gate(Protocol):
    """A rule that may keep a transaction from starting: the outcome of not running it, or None."""

    def blocked(self, what: str, *, to_version: str | None, at: float,
                version: str) -> CheckOutcome | None: ...


class DaemonContext(Protocol):
    """What a policy needs of the daemon: what the node runs, and one transaction at a time."""

    @property
    def stopping(self) -> bool: ...
    def now(self) -> float: ...
    def current_version(self) -> Version: ...
    def current_event(self) -> FListEvent | None: ...
    def current_bins(self) -> Mapping[str, RepoFList]: ...
    async def transaction(self, what: str, call: Transaction, *, to_version: str | None,
                          release: str | None = None) -> CheckOutcome: ...


class Followed(Protocol):
    """A policy as the loop sees it, whatever its kind of event."""

    @property
    def name(self) -> str: ...
    @property
    def repeats(self) -> bool: ...
    def start(self, node: DaemonContext) -> None: ...
    async def step(self, node: DaemonContext) -> CheckOutcome | None: ...
    def channel(self) -> Version | None: ...


class Policy(ABC, Generic[E]):
    """One followed thing. ``repeats``: after a success, look again in the same round (a release
    server applies the versions above the node's one at a time)."""

    name = "policy"
    repeats = False
    memory: ReleaseMemory | None = None  # None: every failed release is proposed again (tests)
    control: ControlGate | None = None  # None: no operator hold or pause is honoured (tests)
    fleet: FleetFeedback[Any] | None = None  # None: no halt flag read, no report sent
    gates: Sequence[Gate] = ()  # the rollout strategy's rules (windows, phased rollout), in order

    @abstractmethod
    def start(self, node: DaemonContext) -> None:
        """Create the watcher from what the node runs at the end of start-up."""

    @abstractmethod
    async def check(self) -> E | None:
        """One look at the source: what is new, or None."""

    @abstractmethod
    async def apply(self, event: E, node: DaemonContext) -> CheckOutcome:
        """Run the transactions the event calls for; never raises for a failed transaction."""

    @abstractmethod
    def confirm(self, event: E, node: DaemonContext) -> None:
        """The event was applied: the watcher moves on."""

    def channel(self) -> Version | None:
        """The node release its source offered at the last check (status: drift); None: not a
        node release (bins) or not checked yet."""
        return None

    async def step(self, node: DaemonContext) -> CheckOutcome | None:
        """Check, apply, confirm on success: None when nothing was new. A failed check raises
        CheckFailed; an unconfirmed event is proposed again at the next round, never skipped."""
        try:
            event = await self.check()
        except Exception as exc:  # CancelledError is not an Exception: it passes through
            raise CheckFailed(self.name, exc) from exc
        if event is None:
            return None
        outcome = await self.apply(event, node)
        if outcome.applied:
            self.confirm(event, node)
        return outcome

    async def guarded(self, node: DaemonContext, identify: Callable[[], Candidate] | None, what: str,
                      call: Transaction, *, to_version: str | None,
                      release: str | None = None) -> CheckOutcome:
        """One transaction, unless the operator's hold or pause, the strategy's gates, the release's
        halted rollout or the memory holds it back; the memory judges the result. ``identify`` names
        the candidate (called only when there is a memory; None: a transaction of our own, such as an
        uninstall, that the memory never judges). ``release``: the hub's repo/name of a boot release
        (fleet feedback)."""
        rules: list[Gate] = [self.control] if self.control is not None else []
        for gate in [*rules, *self.gates]:
            blocked = gate.blocked(what, to_version=to_version, at=node.now(),
                                   version=str(node.current_version()))
            if blocked is not None:
                return blocked
        if self.fleet is not None and release is not None and to_version is not None:
            halted = await self.fleet.halted(release)
            if halted is not None:
                current = str(node.current_version())
                self.fleet.waiting(release, version=to_version, current=current,
                                   reason=f"rollout halted: {halted}")
                log.info("rollout halted on the hub; not applied", extra={"release": release,
                                                                           "reason": halted})
                return CheckOutcome(node.now(), "held", current,
                                    f"{what}: not applied, the rollout of {release} is halted on the hub "
                                    f"({halted})")
        if self.memory is None or identify is None:
            return await node.transaction(what, call, to_version=to_version, release=release)
        candidate = identify()
        held = self.memory.held(candidate, what, at=node.now(), version=str(node.current_version()))
        if held is not None:
            return held
        outcome = await node.transaction(what, call, to_version=to_version, release=release)
        self.memory.judge(candidate, what, outcome)
        return outcome


class BootPolicy(Policy["FListEvent"]):
    """The boot flist's link on a hub: upgrade (or first-install) when its version rises."""

    name = "boot"

    def __init__(self, upgrader: UpgraderPort, source: ReleaseSource[RepoFList],
                 watcher: Callable[[Version], WatcherPort[FListEvent, Version]],
                 *, memory: ReleaseMemory | None = None, control: ControlGate | None = None,
                 gates: Sequence[Gate] = ()) -> None:
        self.memory, self.control, self.gates = memory, control, tuple(gates)
        self._upgrader = upgrader
        self._source = source
        self._make_watcher = watcher
        self._watcher: WatcherPort[FListEvent, Version] | None = None

    def start(self, node: DaemonContext) -> None:
        self._watcher = self._make_watcher(node.current_version())

    async def check(self) -> FListEvent | None:
        return await _started(self._watcher, self.name).check()

    async def apply(self, event: FListEvent, node: DaemonContext) -> CheckOutcome:
        target = event.version()
        verb = "install" if node.current_event() is None else "upgrade"
        call = partial(self._upgrader.install_from, self._source, event, "boot")
        what = f"boot {verb} {event.fqdn()} {target}"
        return await self.guarded(node, partial(flist_identity, event), what, call, to_version=str(target),
                                  release=_release_of(event) if self.fleet is not None else None)

    def confirm(self, event: FListEvent, node: DaemonContext) -> None:
        _started(self._watcher, self.name).confirm(event.version())

    def channel(self) -> Version | None:
        return _seen(self._watcher)


class BinsPolicy(Policy["RepoEvent"]):
    """A repository of bins packages: install what it added or changed, uninstall what it dropped."""

    name = "bins"

    def __init__(self, upgrader: UpgraderPort, source: ReleaseSource[RepoFList],
                 watcher: Callable[[Mapping[str, RepoFList]],
                                   WatcherPort[RepoEvent, Mapping[str, RepoFList]]],
                 *, memory: ReleaseMemory | None = None, control: ControlGate | None = None,
                 gates: Sequence[Gate] = ()) -> None:
        self.memory, self.control, self.gates = memory, control, tuple(gates)
        self._upgrader = upgrader
        self._source = source
        self._make_watcher = watcher
        self._watcher: WatcherPort[RepoEvent, Mapping[str, RepoFList]] | None = None

    def start(self, node: DaemonContext) -> None:
        self._watcher = self._make_watcher(node.current_bins())

    async def check(self) -> RepoEvent | None:
        return await _started(self._watcher, self.name).check()

    async def apply(self, event: RepoEvent, node: DaemonContext) -> CheckOutcome:
        steps: list[tuple[str, Transaction, Callable[[], Candidate] | None]] = []
        for flist in event.to_add:
            install: Transaction = partial(self._upgrader.install_from, self._source, flist, "bin")
            steps.append((f"install {flist.fqdn()}", install, partial(flist_identity, flist)))
        for flist in event.to_del:
            name = flist.fqdn()
            steps.append((f"uninstall {name}", partial(self._upgrader.uninstall_binary, name), None))
        outcomes: list[CheckOutcome] = []
        for what, call, identify in steps:
            if node.stopping:
                break
            # an uninstall (identify None) runs our own manifest: paused too, but never remembered
            outcomes.append(await self.guarded(node, identify, what, call, to_version=None))
        return merge_outcomes(outcomes, at=node.now(), version=str(node.current_version()))

    def confirm(self, event: RepoEvent, node: DaemonContext) -> None:
        # what the repository holds and the node now has
        _started(self._watcher, self.name).confirm(event.all)


class ReleasePolicy(Policy["ReleaseEvent"]):
    """A release server: the signed versions above the node's, one transaction each, in order.

    A node that runs nothing yet installs ``latest`` (not every release ever published), then
    follows at the configured pace (``jump_to_latest`` or one version at a time). One version at a
    time, a held (failed) version blocks those above it until it is cleared: the watcher offers
    versions in order and a newer one is only offered once this one is confirmed.
    """

    name = "publisher"
    repeats = True

    def __init__(self, upgrader: UpgraderPort, source: ReleaseSource[ReleaseEvent],
                 watcher: Callable[[Version, bool], WatcherPort[ReleaseEvent, Version]],
                 *, jump_to_latest: bool = False, memory: ReleaseMemory | None = None,
                 control: ControlGate | None = None, gates: Sequence[Gate] = ()) -> None:
        self.memory, self.control, self.gates = memory, control, tuple(gates)
        self._upgrader = upgrader
        self._source = source
        self._make_watcher = watcher
        self._jump = jump_to_latest
        self._fresh_install = False
        self._watcher: WatcherPort[ReleaseEvent, Version] | None = None

    def start(self, node: DaemonContext) -> None:
        current = node.current_version()
        self._fresh_install = current == ZERO
        self._watcher = self._make_watcher(current, self._jump or self._fresh_install)

    async def check(self) -> ReleaseEvent | None:
        return await _started(self._watcher, self.name).check()

    async def apply(self, event: ReleaseEvent, node: DaemonContext) -> CheckOutcome:
        call = partial(self._upgrader.install_from, self._source, event, "boot")
        return await self.guarded(node, partial(release_identity, event), f"release {event.version}", call,
                                  to_version=str(event.version))

    def confirm(self, event: ReleaseEvent, node: DaemonContext) -> None:
        _started(self._watcher, self.name).confirm(event.version)
        if self._fresh_install:  # installed: from now on, the configured pace
            self._fresh_install = False
            self._watcher = self._make_watcher(node.current_version(), self._jump)

    def channel(self) -> Version | None:
        return _seen(self._watcher)


def _release_of(flist: RepoFList) -> str | None:
    """The hub's repo/name of the flist a link points at (what the fleet reports are about)."""
    try:
        return flist.absolute()
    except ZosUpgradeError:
        return None


def _seen(watcher: object) -> Version | None:
    seen = getattr(watcher, "seen", None)  # the real watchers have it; a test's stand-in may not
    return seen if isinstance(seen, Version) else None


def _started(watcher: W | None, policy: str) -> W:
    if watcher is None:
        raise RuntimeError(f"the {policy} policy was asked to check before start()")
    return watcher
