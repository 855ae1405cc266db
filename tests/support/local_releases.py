"""Releases without a hub: trees packed into a ``dir://`` store, and VerifiedReleases built directly.

For the fast tests of the Flister and the Upgrader: no server, no network; the flist file is copied
into the Flister's downloads directory under its md5, as a release source would leave it.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

from tests.support.node import TreeSpec, write_tree
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.sources import Target, VerifiedRelease


def packed(tmp_path: Path, name: str, tree: TreeSpec, blocks: Path | None = None) -> tuple[Path, Path]:
    """Pack ``tree`` into the flist file ``tmp_path/name``; its blocks into ``blocks`` (a dir:// store)."""
    src, blocks = tmp_path / f"src-{name}", blocks or tmp_path / "blocks"
    write_tree(src, tree)
    out = tmp_path / name
    asyncio.run(pack(src, out, DirStore(blocks)))
    return out, blocks


def verified_release(flist: Path, downloads: Path, *, version: str, fqdn: str = "tf-zos/zos.fl",
                     target: Target = "boot", block_store: str | None = None) -> VerifiedRelease:
    """``flist`` as a source would hand it over: copied to ``downloads/<md5>``, named by that md5."""
    md5 = hashlib.md5(flist.read_bytes()).hexdigest()
    downloads.mkdir(parents=True, exist_ok=True)
    kept = downloads / md5
    shutil.copyfile(flist, kept)
    info = {"type": "regular", "updated": 1, "md5": md5, "name": fqdn.split("/")[1], "target": None,
            "size": flist.stat().st_size}
    return VerifiedRelease(target=target, fqdn=fqdn, version=version, source=str(flist), flist=kept,
                           md5=md5, verified_by="test", info=info, block_store=block_store)
