"""Build the daemon's parts from its config: the one place that knows every concrete class.

Kept apart from :mod:`zos_upgrade.daemon` so the policy there can be exercised with other parts,
and so ``zos-upgrade daemon --help`` does not import the whole stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zos_upgrade.config import Config
from zos_upgrade.daemon import NodeParts, WatcherPort
from zos_upgrade.errors import ConfigError
from zos_upgrade.hub.client import HubClient
from zos_upgrade.node.boot import Boot
from zos_upgrade.publisher import HTTPPublisher, load_public_key
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient
from zos_upgrade.upgrade.flister import Flister
from zos_upgrade.upgrade.upgrader import Upgrader
from zos_upgrade.versions import Version
from zos_upgrade.watch import FListRepoWatcher, FListSemverWatcher, PublisherWatcher

__all__ = ["build", "make_supervisor"]


def make_supervisor(config: Config) -> Supervisor:
    sup = config.supervisor
    if sup.kind == "supervisord":
        return SupervisordClient(config.supervisor_socket, include_dir=config.node_path(sup.include_dir))
    return ZinitClient(config.supervisor_socket, sup.protocol, root=config.root)


def build(config: Config) -> NodeParts:
    src, up = config.source, config.upgrade
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    publisher: HTTPPublisher | None = None
    if src.publisher is not None:
        # checked here, not in the config: `zos-upgrade status` reads the same file and needs no keys
        if not src.trusted_keys:
            raise ConfigError(
                "[source] publisher needs trusted_keys (public key files): "
                "the daemon never applies a release it cannot verify"
            )
        publisher = HTTPPublisher(src.publisher, [load_public_key(p) for p in config.trusted_key_paths])
    # publisher mode: release objects carry full flist URLs, the Flister fetches those directly
    hub = HubClient(src.hub, cache_dir=state_dir / "cache" / "flists") if src.hub else None
    supervisor = make_supervisor(config)
    flister = Flister(state_dir, hub, workers=up.workers)
    upgrader = Upgrader(
        config.root, state_dir, hub, flister, supervisor,
        self_update=up.self_update, program=up.program, protected=tuple(up.protected),
        probation=up.probation, hook_timeout=up.hook_timeout, stop_timeout=up.stop_timeout,
    )
    parts = NodeParts(upgrader=upgrader, boot=Boot(config.root), sweep=flister.sweep)
    parts.closers.append(supervisor.aclose)
    if publisher is not None:
        pub = publisher
        parts.closers.append(pub.aclose)

        def publisher_watcher(current: Version, jump: bool) -> WatcherPort:
            return PublisherWatcher(pub, current, src.interval, jump_to_latest=jump)

        parts.publisher_watcher = publisher_watcher
        parts.jump_to_latest = src.jump_to_latest
        return parts
    assert hub is not None and src.flist is not None  # the config requires hub + flist otherwise
    hub_client, flist = hub, src.flist
    parts.closers.append(hub_client.aclose)

    def boot_watcher(current: Version) -> WatcherPort:
        return FListSemverWatcher(flist, src.interval, current, hub=hub_client)

    parts.boot_watcher = boot_watcher
    if src.bins_repo is not None:
        repo = src.bins_repo

        def bins_watcher(current: Mapping[str, Any]) -> WatcherPort:
            return FListRepoWatcher(repo, current, src.interval, hub=hub_client)

        parts.bins_watcher = bins_watcher
    return parts
