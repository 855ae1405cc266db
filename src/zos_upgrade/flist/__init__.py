"""The flist layer: one entry model, readers and writers of both formats, block pipelines, block stores.

Everything a caller needs is importable from here; the modules underneath are the machinery.
"""

from zos_upgrade.flist.blocks import (
    BLOCK_SIZE,
    BlockCorrupt,
    block_id_matches,
    decrypt_block,
    encrypt_block,
)
from zos_upgrade.flist.model import BlockRef, Entry, EntryKind, FlistError, HostileFlist, Limits
from zos_upgrade.flist.reader import FlistReader, open_flist, write_flist
from zos_upgrade.flist.stores import BlockMissing, BlockStore, Route, Router, StoreError, open_store

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
