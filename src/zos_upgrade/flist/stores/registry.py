"""Which module opens a store URL, by its scheme: a new kind of store is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from zos_upgrade.flist.stores.base import BlockStore, StoreError
from zos_upgrade.flist.stores.dir import open_dir_url
from zos_upgrade.flist.stores.http import open_http_url
from zos_upgrade.flist.stores.s3 import open_s3_url
from zos_upgrade.flist.stores.zdb import open_zdb_url

__all__ = ["OPENERS", "StoreOpener", "open_store"]

# An opener gets the URL as given and its parts (already split, its port already checked); it
# refuses a URL it cannot use with a StoreError that names the URL and what was expected.
StoreOpener = Callable[[str, SplitResult], BlockStore]

# Opening a store only builds its client (no connection yet), and every scheme module imports its
# network library when a store is made, so listing them all here costs a start-up nothing.
OPENERS: dict[str, StoreOpener] = {
    "dir": open_dir_url,
    "http": open_http_url,
    "https": open_http_url,
    "zdb": open_zdb_url,
    "s3": open_s3_url,
}


def open_store(url: str) -> BlockStore:
    """Open the store a URL names, by its scheme (``dir:///abs/path``, ``http(s)://...``, ``zdb://...``,
    ``s3://bucket/prefix``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port is found here, so every opener may read it
    except ValueError as exc:
        raise StoreError(f"invalid store URL {url!r}: {exc}") from exc
    opener = OPENERS.get(parts.scheme)
    if opener is None:
        raise StoreError(f"unsupported store URL {url!r}: expected {_schemes()}")
    return opener(url, parts)


def _schemes() -> str:
    """``dir://, http://, https://, zdb:// or s3://``: every registered scheme, in registry order."""
    names = [f"{scheme}://" for scheme in OPENERS]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
