"""Preflight: what must hold before a transaction may change the node (issue 16 item 12).

The steps table runs these checks, each as early as what it needs is known:

* ``preflight`` (before ``fetch``: nothing downloaded yet) — the supervisor answers a cheap call
  (``list``), and every trust file the node's config names (publisher mode's trusted keys) can be
  read. A transaction that could not restart services, or whose next release could not be verified,
  must not begin.
* the end of ``plan`` (the sizes are known; the journal not begun yet) — the file systems of the node root and
  of the state directory have room for the staged copies of the new files (``<file>.zu-new``, which
  live beside the old inode until the rename) and for the backup (a hard link on the same file
  system, but a full copy when linking fails, so it is counted), plus a margin, and enough inodes.

A failure is a ``PreflightFailed``; the table refuses the release (``ReleaseRefused``), the node
unchanged. Reading free space is a parameter (``FreeSpace``) so tests can make a disk "full".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zos_upgrade.supervisor import Supervisor, SupervisorError
from zos_upgrade.upgrade.errors import PreflightFailed
from zos_upgrade.upgrade.manifest import Manifest
from zos_upgrade.upgrade.plan import Plan

__all__ = ["DiskSpace", "FreeSpace", "check_room", "check_supervisor", "check_trust_files", "statvfs_space",
           "transaction_sizes"]

MiB = 1024 * 1024
DEFAULT_MARGIN = 64 * MiB  # room left for logs, the journal and the services themselves
_MARGIN_RATIO = 0.05       # and 5% of what the transaction writes (metadata, partial blocks)


@dataclass(frozen=True)
class DiskSpace:
    """What an unprivileged process may still use on one file system."""

    free_bytes: int
    free_inodes: int
    device: int  # st_dev: two paths on the same file system share their free space


FreeSpace = Callable[[Path], DiskSpace]


def statvfs_space(path: Path) -> DiskSpace:
    st = os.statvfs(path)
    device = os.stat(path).st_dev
    return DiskSpace(free_bytes=st.f_bavail * st.f_frsize, free_inodes=st.f_favail, device=device)


async def check_supervisor(sup: Supervisor) -> None:
    try:
        await sup.list()
    except SupervisorError as exc:
        raise PreflightFailed(
            f"the supervisor does not answer ({exc}); no release is fetched or applied until it does, "
            "since the services could be neither restarted nor rolled back"
        ) from exc


def check_trust_files(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise PreflightFailed(
                f"trust material {path} is not readable ({exc.strerror or exc}); expected the trusted "
                "public key file the config names"
            ) from exc


def transaction_sizes(plan: Plan, new: Manifest | None,
                      node_path: Callable[[str], Path]) -> tuple[list[int], list[int]]:
    """(sizes of the files staged under the root, sizes of the node files the backup keeps)."""
    staged = [new.files[rel].size for rel in plan.add + plan.replace
              if new is not None and new.files[rel].kind == "file"]
    kept = []
    for rel in plan.replace + plan.remove:
        with contextlib.suppress(OSError):  # already gone: nothing to keep
            kept.append(os.lstat(node_path(rel)).st_size)
    return staged, kept


@dataclass(frozen=True)
class Need:
    """What a transaction will write on one file system."""

    bytes: int = 0
    inodes: int = 0


def check_room(
    *,
    root: Path,
    state_dir: Path,
    staged: Sequence[int],
    backed_up: Sequence[int],
    free_space: FreeSpace,
    margin: int = DEFAULT_MARGIN,
) -> None:
    """Raise PreflightFailed unless both file systems hold ``staged`` (sizes of new files, written
    under ``root``) and ``backed_up`` (sizes of replaced/removed files, kept under ``state_dir``)."""
    root_fs, state_fs = free_space(root), free_space(state_dir)
    needs: dict[int, Need] = {}
    where: dict[int, tuple[Path, DiskSpace]] = {root_fs.device: (root, root_fs)}
    where.setdefault(state_fs.device, (state_dir, state_fs))
    _add(needs, root_fs.device, Need(sum(staged), len(staged)))
    _add(needs, state_fs.device, Need(sum(backed_up), len(backed_up)))
    _judge(needs, where, margin)


def _add(needs: dict[int, Need], device: int, need: Need) -> None:
    old = needs.get(device, Need())
    needs[device] = Need(old.bytes + need.bytes, old.inodes + need.inodes)


def _judge(needs: Mapping[int, Need], where: Mapping[int, tuple[Path, DiskSpace]], margin: int) -> None:
    for device, need in needs.items():
        path, space = where[device]
        wanted = need.bytes + int(need.bytes * _MARGIN_RATIO) + margin
        if space.free_bytes < wanted:
            raise PreflightFailed(
                f"not enough room on the file system of {path}: the transaction writes {need.bytes} bytes "
                f"(staged files and backup), {wanted} with the margin, but {space.free_bytes} are free"
            )
        if space.free_inodes < need.inodes:
            raise PreflightFailed(
                f"not enough inodes on the file system of {path}: {need.inodes} needed, "
                f"{space.free_inodes} free"
            )
