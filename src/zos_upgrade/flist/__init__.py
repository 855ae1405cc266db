"""The flist layer: one entry model, readers and writers of both formats, block pipelines, block stores.

Everything a caller needs is importable from here; the modules underneath are the machinery. They are
loaded on first use, so a process that needs one module (a file-writer child of a materialize) does
not pay for the readers and the network stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zos_upgrade.flist.blocks import (
        BlockCorrupt,
        block_id_matches,
        decrypt_block,
        encrypt_block,
    )
    from zos_upgrade.flist.formats import open_flist, write_flist
    from zos_upgrade.flist.model import (
        BLOCK_SIZE,
        BlockRef,
        Entry,
        EntryKind,
        FlistError,
        FlistTooCostly,
        HostileFlist,
        Limits,
    )
    from zos_upgrade.flist.reader import FlistReader
    from zos_upgrade.flist.stores import BlockMissing, BlockStore, Route, Router, StoreError, open_store

_HOMES = {
    "blocks": ("BlockCorrupt", "block_id_matches", "decrypt_block", "encrypt_block"),
    "model": ("BLOCK_SIZE", "BlockRef", "Entry", "EntryKind", "FlistError", "FlistTooCostly", "HostileFlist",
              "Limits"),
    "formats": ("open_flist", "write_flist"),
    "reader": ("FlistReader",),
    "stores": ("BlockMissing", "BlockStore", "Route", "Router", "StoreError", "open_store"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "BLOCK_SIZE",
    "BlockCorrupt",
    "BlockMissing",
    "BlockRef",
    "BlockStore",
    "Entry",
    "EntryKind",
    "FlistError",
    "FlistReader",
    "FlistTooCostly",
    "HostileFlist",
    "Limits",
    "Route",
    "Router",
    "StoreError",
    "block_id_matches",
    "decrypt_block",
    "encrypt_block",
    "open_flist",
    "open_store",
    "write_flist",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
