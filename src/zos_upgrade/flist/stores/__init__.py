"""Block stores by URL (SPEC 5): one module per scheme, registered by scheme, and the router over them.

- ``dir:///path`` (:mod:`.dir`), ``http(s)://host/path`` (:mod:`.http`, read-only),
  ``zdb://[user[:pass]@]host[:port][/namespace]`` (:mod:`.zdb`, 0-db's refusals typed in
  :mod:`.zdb_errors`), ``s3://bucket[/prefix]`` (:mod:`.s3`, S3-compatible object storage, the
  optional ``[s3]`` extra);
- :func:`open_store` picks the module by the URL's scheme (:mod:`.registry`: a new scheme is one new
  module and one line there);
- :class:`Router` (:mod:`.router`) reads and writes through the stores its routes name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
    from zos_upgrade.flist.stores.base import (
        MAX_STORED_BYTES,
        BlockMissing,
        BlockStore,
        LocalStore,
        StoreError,
        SyncUploader,
    )
    from zos_upgrade.flist.stores.dir import DirStore
    from zos_upgrade.flist.stores.http import HttpStore
    from zos_upgrade.flist.stores.registry import open_store
    from zos_upgrade.flist.stores.router import Route, Router
    from zos_upgrade.flist.stores.s3 import S3Store
    from zos_upgrade.flist.stores.zdb import ZdbStore
    from zos_upgrade.flist.stores.zdb_errors import (
        ZdbAccessDenied,
        ZdbFull,
        ZdbNamespaceMissing,
        ZdbReadOnly,
        ZdbRefused,
        ZdbUnsupported,
    )

__all__ = [
    "MAX_STORED_BYTES",
    "BlockMissing",
    "BlockStore",
    "DirStore",
    "HttpStore",
    "LocalStore",
    "Route",
    "Router",
    "S3Store",
    "StoreError",
    "SyncUploader",
    "ZdbAccessDenied",
    "ZdbFull",
    "ZdbNamespaceMissing",
    "ZdbReadOnly",
    "ZdbRefused",
    "ZdbStore",
    "ZdbUnsupported",
    "open_store",
]

# name -> the submodule defining it, imported at first use: a file-writer process needs dir://,
# http:// and the router, not the zdb:// and s3:// modules
__getattr__ = lazy.exports(__name__, {
    "MAX_STORED_BYTES": "base",
    "BlockMissing": "base",
    "BlockStore": "base",
    "LocalStore": "base",
    "StoreError": "base",
    "SyncUploader": "base",
    "DirStore": "dir",
    "HttpStore": "http",
    "open_store": "registry",
    "Route": "router",
    "Router": "router",
    "S3Store": "s3",
    "ZdbStore": "zdb",
    "ZdbAccessDenied": "zdb_errors",
    "ZdbFull": "zdb_errors",
    "ZdbNamespaceMissing": "zdb_errors",
    "ZdbReadOnly": "zdb_errors",
    "ZdbRefused": "zdb_errors",
    "ZdbUnsupported": "zdb_errors",
})
