"""Build the daemon's parts from its config: the one place that knows every concrete class.

Kept apart from :mod:`zos_upgrade.daemon` so the policy there can be exercised with other parts,
and so ``zos-upgrade daemon --help`` does not import the whole stack.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from zos_upgrade.config import Config
from zos_upgrade.daemon import NodeParts, WatcherPort
from zos_upgrade.errors import ConfigError
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.names import split_fqdn
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.watch import FListRepoWatcher, FListSemverWatcher, PublisherWatcher
from zos_upgrade.publisher import HTTPPublisher, load_public_key
from zos_upgrade.supervisor import Supervisor
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient
from zos_upgrade.upgrade.flister import Flister
from zos_upgrade.upgrade.upgrader import Upgrader
from zos_upgrade.versions import Version

__all__ = ["build", "make_supervisor"]


def make_supervisor(config: Config) -> Supervisor:
    sup = config.supervisor
    if sup.kind == "supervisord":
        return SupervisordClient(config.supervisor_socket, include_dir=config.node_path(sup.include_dir))
    return ZinitClient(config.supervisor_socket, sup.protocol, root=config.root)


async def _check_boot(hub: HubClient, fqdn: str, current: Version) -> FListEvent | None:
    """One look at the boot flist link: its event when it names a version above ``current``."""
    repo, _name = split_fqdn(fqdn)
    event = FListEvent(repo, await hub.info(fqdn), hub)
    return event if event.version() > current else None


def build(config: Config) -> NodeParts:
    src = config.source
    state_dir = config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = make_supervisor(config)
    hub_url = src.hub
    publisher: HTTPPublisher | None = None
    if src.publisher is not None:
        if not src.trusted_keys:
            raise ConfigError("[source] publisher needs trusted_keys: unsigned releases are never applied")
        keys = [load_public_key(p) for p in config.trusted_key_paths]
        publisher = HTTPPublisher(src.publisher, keys)
    # in publisher mode the release objects carry full flist URLs; the hub client is then only the
    # flist cache, pointed at the publisher's host (absolute URLs bypass its base)
    hub = HubClient(hub_url or src.publisher or "", cache_dir=state_dir / "cache" / "flists")
    flister = Flister(state_dir, hub)
    up = config.upgrade
    upgrader = Upgrader(
        config.root, state_dir, hub, flister, supervisor,
        self_update=up.self_update, program=up.program, protected=tuple(up.protected),
        probation=up.probation, hook_timeout=up.hook_timeout, stop_timeout=up.stop_timeout,
    )
    parts = NodeParts(upgrader=upgrader, flister=flister, boot=Boot(config.root))
    parts.closers.append(hub.aclose)
    parts.closers.append(supervisor.aclose)
    if publisher is not None:
        pub = publisher
        parts.publisher = pub
        parts.closers.append(pub.aclose)

        def publisher_watcher(current: Version) -> WatcherPort:
            watcher: Any = PublisherWatcher(pub, current, src.interval)
            return watcher  # type: ignore[no-any-return]

        parts.publisher_watcher = publisher_watcher
        return parts
    assert src.flist is not None  # validated by the config
    flist = src.flist

    def boot_watcher(current: Version) -> WatcherPort:
        watcher: Any = FListSemverWatcher(flist, src.interval, current, hub=hub, jitter=src.jitter)
        return watcher  # type: ignore[no-any-return]

    parts.boot_watcher = boot_watcher
    parts.check_boot = partial(_check_boot, hub, flist)
    if src.bins_repo is not None:
        repo = src.bins_repo

        def bins_watcher(current: Any) -> Any:
            return FListRepoWatcher(repo, current, src.interval, hub=hub)

        parts.bins_watcher = bins_watcher
    return parts
