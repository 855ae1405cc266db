"""Build the daemon's parts from its config: the one place that knows every concrete class.

Kept apart from the loop so the policy can be exercised with other parts, and so
``zos-upgrade daemon --help`` does not import the whole stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from zos_upgrade.config import Config
from zos_upgrade.daemon.check import PlanningUpgrader
from zos_upgrade.daemon.control import ControlGate
from zos_upgrade.daemon.feedback import FleetFeedback
from zos_upgrade.daemon.loop import NodeParts
from zos_upgrade.daemon.memory import ReleaseMemory
from zos_upgrade.daemon.policy import BinsPolicy, BootPolicy, ReleasePolicy
from zos_upgrade.daemon.ports import UpgraderPort
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.flists import RepoFList
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.control import NodeControl
from zos_upgrade.node.failed import FailedReleases
from zos_upgrade.node.identity import load_identity
from zos_upgrade.node.reports import ReportQueue
from zos_upgrade.publisher import HTTPPublisher, load_public_key
from zos_upgrade.sources.hub import HubSource
from zos_upgrade.sources.publisher import PublisherSource
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient
from zos_upgrade.upgrade import Flister, Upgrader
from zos_upgrade.versions import Version
from zos_upgrade.watch import FListRepoWatcher, FListSemverWatcher, PublisherWatcher

__all__ = ["build", "make_supervisor", "make_upgrader"]


def make_supervisor(config: Config) -> Supervisor:
    sup = config.supervisor
    if sup.kind == "supervisord":
        return SupervisordClient(config.supervisor_socket, include_dir=config.node_path(sup.include_dir))
    return ZinitClient(config.supervisor_socket, sup.protocol, root=config.root)


def make_upgrader(config: Config, supervisor: Supervisor) -> Upgrader:
    """The node's Upgrader as the config sets it (the daemon's, and ``zos-upgrade recover``'s)."""
    up = config.upgrade
    # preflight checks the trust material is there before anything is downloaded (publisher mode)
    trust_files = tuple(config.trusted_key_paths) if config.source.publisher is not None else ()
    return Upgrader(
        config.root, config.state_dir, Flister(config.state_dir, workers=up.workers), supervisor,
        self_update=up.self_update, program=up.program, protected=tuple(up.protected),
        probation=up.probation, hook_timeout=up.hook_timeout, stop_timeout=up.stop_timeout,
        reserved=config.reserved_paths(), trust_files=trust_files, space_margin=up.space_margin,
        compatible=config.node.compatible,
    )


def build(config: Config, *, supervisor: Supervisor | None = None,
          check_into: Path | None = None) -> NodeParts:
    """The daemon's parts; ``supervisor`` replaces the configured client (tests inject faults).

    ``check_into``: the parts of ``zos-upgrade check`` instead (``daemon/check.py``): the policies
    drive a PlanningUpgrader, the sources download flist files into that folder, and nothing is
    created in the state directory."""
    src = config.source
    state_dir = config.state_dir
    if check_into is None:
        state_dir.mkdir(parents=True, exist_ok=True)
    publisher: HTTPPublisher | None = None
    if src.publisher is not None:
        # the config refused a publisher without trusted_keys already (so `status` refuses it too)
        publisher = HTTPPublisher(src.publisher, [load_public_key(p) for p in config.trusted_key_paths])
    supervisor = supervisor or make_supervisor(config)
    installer = make_upgrader(config, supervisor)
    upgrader: UpgraderPort = installer if check_into is None else PlanningUpgrader(installer)
    downloads = check_into or installer.flister.downloads_dir
    # one memory of failed releases for every policy: a release that failed is never applied twice
    memory = ReleaseMemory(FailedReleases(state_dir))
    # the operator's hold and pause (`zos-upgrade hold|pause`), read before every transaction
    control = ControlGate(NodeControl(state_dir))
    parts = NodeParts(upgrader=upgrader, boot=Boot(config.root), memory=memory,
                      sweep=installer.flister.sweep if check_into is None else None)
    parts.closers.append(supervisor.aclose)
    if publisher is not None:
        pub = publisher
        parts.closers.append(pub.aclose)

        def publisher_watcher(current: Version, jump: bool) -> PublisherWatcher:
            return PublisherWatcher(pub, current, src.interval, jump_to_latest=jump)

        # release objects carry full flist URLs: the source fetches those and checks the signed hash
        releases = PublisherSource(downloads)
        parts.policies.append(ReleasePolicy(upgrader, releases, publisher_watcher,
                                            jump_to_latest=src.jump_to_latest, memory=memory,
                                            control=control))
        return parts
    assert src.hub is not None and src.flist is not None  # the config requires hub + flist otherwise
    hub, flist = HubClient(src.hub, cache_dir=state_dir / "cache" / "flists"), src.flist
    parts.closers.append(hub.aclose)
    flists = HubSource(hub, downloads)
    if src.bins_repo is not None:
        repo = src.bins_repo

        def bins_watcher(current: Mapping[str, RepoFList]) -> FListRepoWatcher:
            return FListRepoWatcher(repo, current, src.interval, hub=hub)

        parts.policies.append(BinsPolicy(upgrader, flists, bins_watcher, memory=memory, control=control))

    def boot_watcher(current: Version) -> FListSemverWatcher:
        return FListSemverWatcher(flist, src.interval, current, hub=hub)

    boot = BootPolicy(upgrader, flists, boot_watcher, memory=memory, control=control)
    if config.report.token is not None and check_into is None:
        boot.fleet = parts.feedback = fleet_feedback(config, src.hub)
        parts.closers.append(boot.fleet.hub.aclose)
    parts.policies.append(boot)
    return parts


def fleet_feedback(config: Config, hub_url: str) -> FleetFeedback[HubClient]:
    """Reports to the hub at ``hub_url`` with the node's token, queued in the state dir."""
    identity = load_identity(config.state_dir, config.node.id, config.node.group)
    client = HubClient(hub_url, token=config.report.token, timeout=10.0)
    return FleetFeedback(ReportQueue(config.state_dir, config.report.queue), client, identity.id,
                         identity.group)
