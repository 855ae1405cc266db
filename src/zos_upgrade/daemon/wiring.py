"""Build the daemon's parts from its config: the one place that knows every concrete class.

Kept apart from the loop so the policy can be exercised with other parts, and so
``zos-upgrade daemon --help`` does not import the whole stack.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from zos_upgrade.config import Config
from zos_upgrade.daemon.control import ControlGate
from zos_upgrade.daemon.loop import NodeParts
from zos_upgrade.daemon.memory import ReleaseMemory
from zos_upgrade.daemon.policy import BinsPolicy, BootPolicy, Gate, ReleasePolicy
from zos_upgrade.daemon.ports import UpgraderPort
from zos_upgrade.daemon.strategy import PlanLookup, RolloutGate, WindowGate, calendar_of
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.control import NodeControl
from zos_upgrade.node.events import FListEvent, RepoEvent
from zos_upgrade.node.failed import FailedReleases
from zos_upgrade.node.identity import NodeIdentity, load_identity, read_generated_id
from zos_upgrade.sources.base import ReleaseSource
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.upgrade import DisruptGate, Flister, Upgrader
from zos_upgrade.upgrade.probe import ProgramProbe
from zos_upgrade.versions import Version
from zos_upgrade.watch import FListRepoWatcher, FListSemverWatcher

if TYPE_CHECKING:
    from zos_upgrade.daemon.feedback import FleetFeedback
    from zos_upgrade.daemon.fleetlock import FleetLockGate
    from zos_upgrade.hub.client import HubClient
    from zos_upgrade.publisher import HTTPPublisher
    from zos_upgrade.trust.client import TrustedRepo
    from zos_upgrade.trust.isolated import IsolatedTrust
    from zos_upgrade.trust.view import TargetLike, Trusted
    from zos_upgrade.watch import PublisherWatcher

# Each kind of source's classes are imported in the branch that builds it: a node following a hub
# without TUF never loads python-tuf, a hub-following node never loads the release server's client,
# and so on (issue 19: an idle daemon's memory).

__all__ = ["build", "make_supervisor", "make_trusted", "make_upgrader"]

log = logging.getLogger(__name__)


def make_trusted(config: Config, repo: str | None, *, into: Path | None = None) -> TrustedRepo:
    """The node's TUF view of hub repository ``repo`` (None: the release tree), cached under
    ``<state_dir>/trust/<repo or "releases">/``; its pinned root copied there on first use.

    ``into``: another folder for the cache (``zos-upgrade check`` writes nothing in the state dir):
    it starts as a copy of the node's cache, so the check trusts exactly what the daemon trusts."""
    from zos_upgrade.trust.client import TrustedRepo
    from zos_upgrade.trust.fetcher import HttpxFetcher
    from zos_upgrade.trust.layout import (
        hub_targets_url,
        publisher_targets_url,
    )

    trust, src = config.trust, config.source
    assert trust.root is not None  # callers check config.tuf
    name = repo or "releases"
    folder = (into or config.trust_dir) / name
    if into is not None and (config.trust_dir / name).is_dir() and not folder.exists():
        shutil.copytree(config.trust_dir / name, folder, symlinks=True)
    if repo is None:
        assert src.publisher is not None
        return TrustedRepo(folder, _publisher_metadata_url(config), publisher_targets_url(src.publisher),
                           config.node_path(trust.root), HttpxFetcher(), name="releases")
    assert src.hub is not None
    pinned = trust.bins_root if _is_bins(config, repo) else trust.root
    assert pinned is not None  # the config requires bins_root with bins_repo under [trust]
    metadata = _hub_metadata_url(config, repo)
    return TrustedRepo(folder, metadata, hub_targets_url(src.hub, repo), config.node_path(pinned),
                       HttpxFetcher(), name=repo)


def _is_bins(config: Config, repo: str) -> bool:
    """``repo`` is the bins repository, and not the boot flist's (which has its own root)."""
    src = config.source
    return repo == src.bins_repo and (src.flist or "").split("/")[0] != repo


def _publisher_metadata_url(config: Config) -> str:
    from zos_upgrade.trust.layout import publisher_metadata_url

    assert config.source.publisher is not None
    return config.trust.metadata_url or publisher_metadata_url(config.source.publisher)


def _hub_metadata_url(config: Config, repo: str) -> str:
    """ngclient's metadata URL of hub repository ``repo``: ``[trust] metadata_url`` for the boot one."""
    from zos_upgrade.trust.layout import hub_metadata_url

    assert config.source.hub is not None
    url = config.trust.metadata_url
    return hub_metadata_url(config.source.hub, repo) if _is_bins(config, repo) or url is None else url


def _trust(config: Config, repo: str | None, *, into: Path | None) -> TrustedRepo | IsolatedTrust:
    """The daemon's repository: python-tuf refreshes in a child process and loads here only for a
    transaction (``trust/isolated.py``); ``zos-upgrade check`` (``into``) refreshes in-process."""
    if into is not None:
        return make_trusted(config, repo, into=into)
    from zos_upgrade.trust.isolated import IsolatedTrust

    name = repo or "releases"
    folder = config.trust_dir / name
    metadata = _publisher_metadata_url(config) if repo is None else _hub_metadata_url(config, repo)
    return IsolatedTrust(lambda: make_trusted(config, repo), name=name, metadata_url=metadata,
                         metadata_dir=folder, status_file=folder.with_name(name + ".status.json"))


def _warn_unauthenticated(what: str) -> None:
    log.warning("UNAUTHENTICATED: following the hub without TUF ([trust] insecure = true): anyone "
                "answering for it can install anything", extra={"followed": what})


class _InsecureLinkWatcher(FListSemverWatcher):
    """``[trust] insecure``: the hub's link, with a warning at every check."""

    async def check(self) -> FListEvent | None:
        _warn_unauthenticated(self.flist)
        return await super().check()


class _InsecureRepoWatcher(FListRepoWatcher):
    """``[trust] insecure``: the hub's repository listing, with a warning at every check."""

    async def check(self) -> RepoEvent | None:
        _warn_unauthenticated(self.repo)
        return await super().check()

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_VersionOf = Callable[["TargetLike"], "str | None"]
_WithPlans = Callable[["Trusted | None", "str | None", _VersionOf], list[Gate]]


def make_supervisor(config: Config) -> Supervisor:
    sup = config.supervisor
    if sup.kind == "supervisord":
        from zos_upgrade.supervisor.supervisord import SupervisordClient

        return SupervisordClient(config.supervisor_socket, include_dir=config.node_path(sup.include_dir))
    from zos_upgrade.supervisor.zinit import ZinitClient

    return ZinitClient(config.supervisor_socket, sup.protocol, root=config.root)


def make_upgrader(config: Config, supervisor: Supervisor, *, disrupt: DisruptGate | None = None,
                  config_file: Path | None = None) -> Upgrader:
    """The node's Upgrader as the config sets it (the daemon's, and ``zos-upgrade recover``'s).

    ``config_file``: the file the config came from; the new program of a self-update must load it
    in its start-up probe (``upgrade/probe.py``)."""
    up = config.upgrade
    probe_args = ("self-test", "--config", str(config_file)) if config_file else ("self-test",)
    # preflight checks the trust material is there before anything is downloaded: the publisher's
    # keys, the pinned TUF roots
    trust_files = tuple(config.trusted_key_paths) if config.source.publisher is not None else ()
    trust_files += tuple(config.node_path(p) for p in (config.trust.root, config.trust.bins_root) if p)
    return Upgrader(
        config.root, config.state_dir, Flister(config.state_dir, workers=up.workers), supervisor,
        self_update=up.self_update, program=up.program, protected=tuple(up.protected),
        probation=up.probation, hook_timeout=up.hook_timeout, stop_timeout=up.stop_timeout,
        reserved=config.reserved_paths(), trust_files=trust_files, space_margin=up.space_margin,
        compatible=config.node.compatible, disrupt=disrupt,
        probe=ProgramProbe(probe_args, up.probe_timeout) if up.self_update else None,
    )


def _identity(config: Config, *, planning: bool) -> NodeIdentity | None:
    """The node's identity; ``zos-upgrade check`` creates nothing, so it only reads a kept id."""
    node = config.node
    if not planning:
        return load_identity(config.state_dir, node.id, node.group)
    kept = node.id or read_generated_id(config.state_dir)
    return NodeIdentity(kept, node.group, "config" if node.id else "generated") if kept else None


def build(config: Config, *, supervisor: Supervisor | None = None, check_into: Path | None = None,
          clock: Clock = time.time, sleep: Sleep = asyncio.sleep,
          plans: PlanLookup | None = None, config_file: Path | None = None) -> NodeParts:
    """The daemon's parts; ``supervisor`` replaces the configured client (tests inject faults).

    ``check_into``: the parts of ``zos-upgrade check`` instead (``daemon/check.py``): the policies
    drive a PlanningUpgrader, the sources download flist files into that folder, and nothing is
    created in the state directory. ``clock`` is what the maintenance windows and rollout plans are
    judged by and ``sleep`` how the FleetLock wait sleeps (tests control both); ``plans`` gives a
    release's phased rollout plan (tests); None: under ``[trust] root`` the plans signed in the
    verified TUF metadata (``daemon/plans.py``), without TUF none (a plan is never read unsigned)."""
    src = config.source
    state_dir = config.state_dir
    if check_into is None:
        state_dir.mkdir(parents=True, exist_ok=True)
    publisher: HTTPPublisher | None = None
    if src.publisher is not None and not config.tuf:
        from zos_upgrade.publisher import HTTPPublisher, load_public_key

        # the config refused a publisher without trusted_keys already (so `status` refuses it too)
        publisher = HTTPPublisher(src.publisher, [load_public_key(p) for p in config.trusted_key_paths])
    supervisor = supervisor or make_supervisor(config)
    identity = _identity(config, planning=check_into is not None)
    rollout = config.rollout
    fleet_lock: FleetLockGate | None = None
    if rollout.strategy == "fleet_lock" and identity is not None and check_into is None:
        assert rollout.fleet_lock.base_url is not None  # the config requires it for fleet_lock
        from zos_upgrade.daemon.fleetlock import FleetLockGate
        from zos_upgrade.rollout.fleetlock import FleetLockClient

        lock_client = FleetLockClient(rollout.fleet_lock.base_url, identity.id, identity.group)
        fleet_lock = FleetLockGate(lock_client, state_dir, node_id=identity.id, group=identity.group,
                                   sleep=sleep, clock=clock)
    installer = make_upgrader(config, supervisor, disrupt=fleet_lock, config_file=config_file)
    upgrader: UpgraderPort = installer
    if check_into is not None:
        from zos_upgrade.daemon.check import PlanningUpgrader

        upgrader = PlanningUpgrader(installer)
    downloads = check_into or installer.flister.downloads_dir
    # one memory of failed releases for every policy: a release that failed is never applied twice
    memory = ReleaseMemory(FailedReleases(state_dir))
    # the operator's hold and pause (`zos-upgrade hold|pause`), read before every transaction
    control = ControlGate(NodeControl(state_dir))
    parts = NodeParts(upgrader=upgrader, boot=Boot(config.root), memory=memory,
                      sweep=installer.flister.sweep if check_into is None else None,
                      identity=identity, strategy=rollout.strategy, fleet_lock=fleet_lock)
    parts.closers.append(supervisor.aclose)
    if fleet_lock is not None:
        parts.closers.append(fleet_lock.client.aclose)
    # the rollout strategy's rules, after the operator's control: windows, then a release's plan
    base_gates: list[Gate] = []
    if rollout.strategy == "periodic":
        parts.window = WindowGate(calendar_of(config), clock=clock)
        base_gates.append(parts.window)

    def with_plans(trusted: Trusted | None, link: str | None,
                   version_of: Callable[[TargetLike], str | None]) -> list[Gate]:
        """The gates, and last the phased rollout's: plans given by the caller, else (under
        [trust] root) from the verified metadata of ``trusted`` only; no plans without TUF."""
        lookup = plans
        if lookup is None and trusted is not None:
            from zos_upgrade.daemon.plans import TrustedPlans

            lookup = TrustedPlans(trusted, link=link, version_of=version_of)
        if lookup is None or identity is None:
            return list(base_gates)
        return [*base_gates, RolloutGate(identity.id, lookup, clock=clock)]

    trust_into = check_into / "trust" if check_into is not None else None
    if src.publisher is not None and config.tuf:
        from zos_upgrade.daemon.plans import release_version
        from zos_upgrade.sources.tuf import TufReleaseSource
        from zos_upgrade.trust.layout import LATEST
        from zos_upgrade.watch import PublisherWatcher
        from zos_upgrade.watch.tuf import TufPublisher

        trusted = _trust(config, None, into=trust_into)
        gates = with_plans(trusted, LATEST, release_version)
        tuf_pub = TufPublisher(trusted)
        parts.closers.append(tuf_pub.aclose)

        def tuf_publisher_watcher(current: Version, jump: bool) -> PublisherWatcher:
            return PublisherWatcher(tuf_pub, current, src.interval, jump_to_latest=jump)

        # what the node believes is the release tree's TUF metadata: signed versions, latest, hashes
        parts.policies.append(ReleasePolicy(upgrader, TufReleaseSource(trusted, downloads),
                                            tuf_publisher_watcher, jump_to_latest=src.jump_to_latest,
                                            memory=memory, control=control,
                                            gates=gates))
        return parts
    gates = with_plans(None, None, lambda target: None)  # without TUF no plans: never asked
    if publisher is not None:
        from zos_upgrade.sources.publisher import PublisherSource
        from zos_upgrade.watch import PublisherWatcher

        pub = publisher
        parts.closers.append(pub.aclose)

        def publisher_watcher(current: Version, jump: bool) -> PublisherWatcher:
            return PublisherWatcher(pub, current, src.interval, jump_to_latest=jump)

        # release objects carry full flist URLs: the source fetches those and checks the signed hash
        releases = PublisherSource(downloads)
        parts.policies.append(ReleasePolicy(upgrader, releases, publisher_watcher,
                                            jump_to_latest=src.jump_to_latest, memory=memory,
                                            control=control, gates=gates))
        return parts
    assert src.hub is not None and src.flist is not None  # the config requires hub + flist otherwise
    if config.tuf:
        _tuf_hub(config, parts, upgrader, downloads, memory, control, trust_into, with_plans, identity)
        return parts
    from zos_upgrade.hub.client import HubClient  # here: a TUF node polls through its trust, not this

    hub, flist = HubClient(src.hub, cache_dir=state_dir / "cache" / "flists"), src.flist
    parts.closers.append(hub.aclose)
    from zos_upgrade.sources.hub import HubSource

    flists = HubSource(hub, downloads)
    bins: _Followed[Mapping[str, RepoFList], FListRepoWatcher] | None = None
    if src.bins_repo is not None:
        repo = src.bins_repo

        def bins_watcher(current: Mapping[str, RepoFList]) -> FListRepoWatcher:
            return _InsecureRepoWatcher(repo, current, src.interval, hub=hub)

        bins = (flists, bins_watcher)

    def boot_watcher(current: Version) -> FListSemverWatcher:
        return _InsecureLinkWatcher(flist, src.interval, current, hub=hub)

    policies = _HubPolicies(config, parts, upgrader, memory, control, gates, identity,
                            planning=check_into is not None)
    policies.add((flists, boot_watcher), bins)
    return parts


def _tuf_hub(config: Config, parts: NodeParts, upgrader: UpgraderPort, downloads: Path,
             memory: ReleaseMemory, control: ControlGate, trust_into: Path | None,
             with_plans: _WithPlans, identity: NodeIdentity | None) -> None:
    """Hub mode through TUF: the boot link and the bins repo resolved by their signed targets; the
    boot link's releases may carry rollout plans (bins packages have none)."""
    from zos_upgrade.daemon.plans import flist_version
    from zos_upgrade.sources.tuf import TufHubSource
    from zos_upgrade.watch.tuf import TufLinkWatcher, TufRepoWatcher

    src = config.source
    assert src.hub is not None and src.flist is not None
    hub_url, flist = src.hub, src.flist
    boot_repo, _, link_name = flist.partition("/")
    trusted = _trust(config, boot_repo, into=trust_into)
    parts.closers.append(_closer(trusted))
    gates = with_plans(trusted, link_name, flist_version)
    bins: _Followed[Mapping[str, RepoFList], FListRepoWatcher] | None = None
    if src.bins_repo is not None:
        repo = src.bins_repo
        bins_trusted = trusted if repo == boot_repo else _trust(config, repo, into=trust_into)
        if bins_trusted is not trusted:
            parts.closers.append(_closer(bins_trusted))
        bins_source = TufHubSource(bins_trusted, repo, downloads, hub_url=hub_url)

        def bins_watcher(current: Mapping[str, RepoFList]) -> FListRepoWatcher:
            return TufRepoWatcher(repo, current, src.interval, trusted=bins_trusted)

        bins = (bins_source, bins_watcher)

    def boot_watcher(current: Version) -> FListSemverWatcher:
        return TufLinkWatcher(flist, src.interval, current, trusted=trusted)

    boot_source = TufHubSource(trusted, boot_repo, downloads, hub_url=hub_url)
    policies = _HubPolicies(config, parts, upgrader, memory, control, gates, identity,
                            planning=trust_into is not None)
    policies.add((boot_source, boot_watcher), bins)


Current = TypeVar("Current")
Watcher = TypeVar("Watcher")
# what a hub-following policy is made of: the source that vouches for releases, and its watcher
_Followed = tuple[ReleaseSource[RepoFList], Callable[[Current], Watcher]]


@dataclass
class _HubPolicies:
    """The policies of a hub-following node, whatever vouches for its releases (the hub's md5 or
    TUF): the bins repository's when one is followed, then the boot link's, which reports to the
    hub."""

    config: Config
    parts: NodeParts
    upgrader: UpgraderPort
    memory: ReleaseMemory
    control: ControlGate
    gates: list[Gate]
    identity: NodeIdentity | None
    planning: bool

    def add(self, boot: _Followed[Version, FListSemverWatcher],
            bins: _Followed[Mapping[str, RepoFList], FListRepoWatcher] | None) -> None:
        memory, control, gates = self.memory, self.control, self.gates
        if bins is not None:
            self.parts.policies.append(
                BinsPolicy(self.upgrader, bins[0], bins[1], memory=memory, control=control, gates=gates))
        policy = BootPolicy(self.upgrader, boot[0], boot[1], memory=memory, control=control, gates=gates)
        _report_to_hub(self.config, self.parts, policy, self.identity, planning=self.planning)
        self.parts.policies.append(policy)


def _closer(trusted: TrustedRepo | IsolatedTrust) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        trusted.close()
    return close


def _report_to_hub(config: Config, parts: NodeParts, boot: BootPolicy, identity: NodeIdentity | None,
                   *, planning: bool) -> None:
    """With a ``[report] token``, the boot policy reports its transactions to the hub it follows
    and honours the hub's halt flag (``zos-upgrade check`` reports nothing)."""
    if config.report.token is None or planning:
        return
    assert config.source.hub is not None
    boot.fleet = parts.feedback = fleet_feedback(config, config.source.hub, identity)
    parts.closers.append(boot.fleet.hub.aclose)


def fleet_feedback(config: Config, hub_url: str,
                   identity: NodeIdentity | None = None) -> FleetFeedback[HubClient]:
    """Reports to the hub at ``hub_url`` with the node's token, queued in the state dir."""
    from zos_upgrade.daemon.feedback import FleetFeedback
    from zos_upgrade.hub.client import HubClient
    from zos_upgrade.node.reports import ReportQueue

    identity = identity or load_identity(config.state_dir, config.node.id, config.node.group)
    client = HubClient(hub_url, token=config.report.token, timeout=10.0)
    return FleetFeedback(ReportQueue(config.state_dir, config.report.queue), client, identity.id,
                         identity.group)
