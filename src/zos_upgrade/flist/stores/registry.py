"""Which module opens a store URL, by its scheme: a new kind of store is one module and one line here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from zos_upgrade.flist.stores.base import BlockStore, StoreError
from zos_upgrade.flist.stores.dir import open_dir_url
from zos_upgrade.flist.stores.http import open_http_url

__all__ = ["OPENERS", "StoreOpener", "open_store"]

# An opener gets the URL as given and its parts (already split, its port already checked); it
# refuses a URL it cannot use with a StoreError that names the URL and what was expected.
StoreOpener = Callable[[str, SplitResult], BlockStore]



def _imported_at_first_url(module: str, name: str) -> StoreOpener:
    """The opener ``name`` of scheme module ``module``, imported when a URL of its scheme is opened:
    a process that never opens one (a file-writer child of a materialize) starts without them (5 ms
    of CPU less per child, medians of 15)."""
    def open_url(url: str, parts: SplitResult) -> BlockStore:
        opener: StoreOpener = getattr(importlib.import_module(f"zos_upgrade.flist.stores.{module}"), name)
        return opener(url, parts)
    return open_url


# Opening a store only builds its client (no connection yet), and every scheme module imports its
# network library when a store is made.
OPENERS: dict[str, StoreOpener] = {
    "dir": open_dir_url,
    "http": open_http_url,
    "https": open_http_url,
    "zdb": _imported_at_first_url("zdb", "open_zdb_url"),
    "s3": _imported_at_first_url("s3", "open_s3_url"),
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
