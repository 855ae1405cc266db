"""What every step of a transaction works on: the node's files, the journal, manifests, supervisor.

One :class:`Context` per Upgrader; the steps (``steps.py``) and the way back or forward
(``outcome.py``) take it instead of reaching into the Upgrader, so each can be read alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypedDict

from zos_upgrade.supervisor import Supervisor
from zos_upgrade.upgrade.datapaths import DataPaths, state_relative
from zos_upgrade.upgrade.flister import Flister
from zos_upgrade.upgrade.journal import Journal
from zos_upgrade.upgrade.manifest import SERVICE_DIR, Manifest, ManifestStore
from zos_upgrade.upgrade.nodefs import NodeFS
from zos_upgrade.upgrade.preflight import DEFAULT_MARGIN, FreeSpace, statvfs_space
from zos_upgrade.upgrade.probe import ProgramProbe
from zos_upgrade.upgrade.release_entries import ReadEntries

__all__ = ["Clock", "Context", "DisruptGate", "Pace", "Settings", "Sleep"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class Pace(TypedDict):
    """How long to wait for services to stop, and the sleep and clock to wait with."""

    stop_timeout: float
    sleep: Sleep
    clock: Clock


class DisruptGate(Protocol):
    """Who must agree before a transaction disrupts the node (the daemon's FleetLock gate): ``take``
    returns once this node may stop its services (it may wait for long; it raises to refuse), and
    ``release`` says the node is steady again (after the commit or a complete rollback). The upgrade
    layer only calls it; what it talks to is the daemon's business."""

    async def take(self) -> None: ...
    async def release(self) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The Upgrader's configuration (SPEC 11): what it may replace, and how long each wait lasts."""

    self_update: bool = True
    program: str = "bin/zos-upgrade"  # relative to the node root
    protected: tuple[str, ...] = ("upgrade",)
    probation: float = 30.0
    start_timeout: float = 30.0
    hook_timeout: float = 300.0
    stop_timeout: float = 30.0
    # node paths (absolute) no release may write -> what they are; the state dir is always one
    reserved: Mapping[str, str] = field(default_factory=dict)
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    trust_files: tuple[Path, ...] = ()        # must be readable before a transaction (trusted keys)
    free_space: FreeSpace = statvfs_space     # how preflight reads a file system's free space
    space_margin: int = DEFAULT_MARGIN        # bytes preflight keeps free beyond what is written
    compatible: str | None = None             # the node's `[node] compatible` name (compat.py)
    disrupt: DisruptGate | None = None        # asked before services stop (the "lock" step)
    # the self step starts the new program once before handing over to it (probe.py); None: not
    probe: ProgramProbe | None = None


def reserved_paths(root: Path, state_dir: Path, configured: Mapping[str, str]) -> dict[str, str]:
    """What no release may write, relative to ``root``: ``configured`` node paths and the state dir."""
    reserved = {path.strip("/"): what for path, what in configured.items() if path.strip("/")}
    state = state_relative(root, state_dir)
    if state:  # None: outside the root, where no release writes anyway
        reserved[state] = "the upgrader's state directory"
    return reserved


class Context:
    """The node a transaction changes, and the records that make the change crash-safe."""

    def __init__(self, root: Path, state_dir: Path, flister: Flister, supervisor: Supervisor,
                 settings: Settings) -> None:
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.flister = flister
        self.supervisor = supervisor
        self.settings = settings
        self.journal = Journal(self.state_dir)
        self.manifests = ManifestStore(self.state_dir)
        self.files = NodeFS(self.root, self.state_dir / "backup" / "current")
        self.data = DataPaths(self.files, self.state_dir / "backup" / "data", self.state_dir)
        # zinit reads the release's etc/zinit/*.yaml itself: those files, applied and rolled back
        # byte for byte with the others, ARE its configs; other back-ends get them rendered
        self.configs_are_files = supervisor.reads_configs_from(self.root / SERVICE_DIR)
        self.reserved = reserved_paths(self.root, self.state_dir, settings.reserved)
        self.read_entries = ReadEntries()  # the last release's entries: the next plan's installed blocks

    def pace(self) -> Pace:
        return {"stop_timeout": self.settings.stop_timeout, "sleep": self.settings.sleep,
                "clock": self.settings.clock}

    def installed_boot(self) -> Manifest | None:
        return self.manifests.load("boot")

    def installed_bins(self) -> dict[str, Manifest]:
        return self.manifests.bins()

    def owned_elsewhere(self, key: str) -> dict[str, str]:
        """Every path of the installed manifests other than ``key``'s -> who owns it."""
        owners = {"boot": self.installed_boot(), **self.installed_bins()}
        owned: dict[str, str] = {}
        for owner, manifest in owners.items():
            if owner == key or manifest is None:
                continue
            label = "the boot release" if owner == "boot" else f"bins package {owner}"
            for rel in manifest.files:
                owned.setdefault(rel, label)
        return owned

    def drop_backups(self) -> None:
        self.files.drop_backup()
        self.data.drop()
