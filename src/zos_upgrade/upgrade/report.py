"""UpgradeReport: what one transaction did and cost (files, services, bytes, time of each step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TransactionKind", "UpgradeReport"]

# what a transaction does: the boot release, install / uninstall one bins package, or take the boot
# release back to the previous one (``zos-upgrade rollback``)
TransactionKind = Literal["boot", "bin-install", "bin-uninstall", "rollback"]


@dataclass
class UpgradeReport:
    kind: TransactionKind
    from_version: str
    to_version: str
    files_added: int = 0
    files_replaced: int = 0
    files_removed: int = 0
    services_restarted: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    blocks_fetched: int = 0
    blocks_from_cache: int = 0
    release_bytes: int = 0
    files_staged: int = 0        # paths the mount wrote (added and changed files, control files)
    blocks_from_node: int = 0    # blocks read from the node's installed files, not fetched
    phases: dict[str, float] = field(default_factory=dict)
