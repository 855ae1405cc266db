"""What a later ``zos-upgrade rollback`` needs and the node will not hold, kept in the node's block
cache: the blocks of the installed files a transaction replaces or removes, and those of the
release's control files (hooks, ``hooks.paths``: never installed). The old files are read from the
backup, which holds their inodes, in a thread while the steps after the apply run (``steps._apply``;
joined before the commit or a rollback); a transaction that replaces the upgrader's own program
reads them from the node before anything changes (its process exits before the backup).

Blocks a transaction fetches are written once, into their files (the cache is not a second copy of
every release: issue 19); the files it leaves in place keep serving their own blocks (``node_blocks``).
What the node loses is the old content of the files it replaces or removes, and it never holds the
control files, so that content is sealed back into its stored form and cached here, each block
checked on the way: its plain bytes against its key (the file may have drifted) and the sealed bytes
against the id the flist names (sealing is deterministic for flists we packed; a block another
packer sealed differently is left out, and a rollback fetches it). Best effort: nothing here fails a
transaction, it only counts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from zos_upgrade.flist.model import BlockRef, FlistError
from zos_upgrade.upgrade.staging import FileBlocks

if TYPE_CHECKING:
    from zos_upgrade.flist.cache import BlockCache

__all__ = ["keep_blocks_of"]

log = logging.getLogger(__name__)


def keep_blocks_of(root: Path, cache: BlockCache, files: dict[str, FileBlocks]) -> int:
    """Cache the blocks of ``files`` (paths under ``root`` with their block lists); returns how many
    blocks were added. Blocking: run it in a thread."""
    from zos_upgrade.flist.blocks import encrypt_block  # the block stack loads at a transaction
    from zos_upgrade.flist.node_blocks import NodeBlocks

    files = {rel: blocks for rel, blocks in files.items() if blocks.ids}
    if not files:
        return 0
    blocks = NodeBlocks.index(root, ((rel, list(zip(f.keys, f.sizes, strict=True)))
                                     for rel, f in files.items()))
    added = skipped = 0
    try:
        for recorded in files.values():
            for block_id, key in zip(recorded.ids, recorded.keys, strict=True):
                ref = BlockRef(block_id, key)
                if cache.has(block_id):
                    continue
                plain = blocks.plain(ref)
                if plain is None:
                    skipped += 1
                    continue
                sealed_ref, stored = encrypt_block(plain, "v1" if len(key) == 16 else "v2")
                if sealed_ref.id != block_id:
                    skipped += 1  # sealed otherwise by its packer: a rollback fetches it
                    continue
                cache.put_verified(block_id, stored)
                added += 1
    except (OSError, FlistError) as exc:
        log.warning("blocks of the replaced files not all kept: a rollback may download them",
                    extra={"reason": f"{type(exc).__name__}: {exc}", "kept": added})
    finally:
        blocks.close()
    if added or skipped:
        log.info("blocks of the replaced files kept for a rollback", extra={"kept": added, "left": skipped})
    return added
