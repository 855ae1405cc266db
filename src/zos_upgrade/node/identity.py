"""The node's identity in the fleet: ``[node] id`` when configured, else one generated once and kept.

The id is what a FleetLock server knows the node by and what its rollout bucket is computed from
(:mod:`zos_upgrade.rollout`), so it must not change between restarts: a generated one (a random
UUID, hex) is written durably to ``<state>/node-id.json`` before it is first used, and read back
ever after. A file that exists but is damaged is an error, never silently replaced: a new id would
move the node to another bucket and orphan any FleetLock slot held under the old one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from zos_upgrade.config import NODE_ID
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.fsutil import atomic_write_bytes
from zos_upgrade.node.documents import read_document

__all__ = ["IDENTITY_FILE", "IdentityError", "NodeIdentity", "load_identity", "read_generated_id"]

IDENTITY_FILE = "node-id.json"

_HINT = "; remove it to have a new id generated (the node changes rollout bucket and lock identity)"


class IdentityError(ZosUpgradeError):
    """The kept node id cannot be read or is not one."""


class _Kept(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    created: float


@dataclass(frozen=True)
class NodeIdentity:
    id: str
    group: str
    source: Literal["config", "generated"]  # where the id came from


def read_generated_id(state_dir: Path) -> str | None:
    """The id kept in the state dir, or None when none was generated yet."""
    path = state_dir / IDENTITY_FILE
    kept = read_document(path, _Kept, limit=4096, expected="a small JSON object", what="a node id record",
                         error=IdentityError, hint=_HINT)
    if kept is None:
        return None
    if not NODE_ID.fullmatch(kept.id):
        raise IdentityError(f"{path}: id = {kept.id!r} is not a node id{_HINT}")
    return kept.id


def load_identity(state_dir: Path, configured: str | None, group: str, *,
                  new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                  clock: Callable[[], float] = time.time) -> NodeIdentity:
    """The configured id, else the kept one, else a new one written durably first."""
    if configured is not None:
        return NodeIdentity(configured, group, "config")
    kept = read_generated_id(state_dir)
    if kept is None:
        kept = new_id()
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(state_dir / IDENTITY_FILE,
                           msgspec.json.encode(_Kept(id=kept, created=clock())) + b"\n", mode=0o644)
    return NodeIdentity(kept, group, "generated")
