"""zos-upgrade: the 0-OS upgrade module in Python.

The public API mirrors the Go original (``pkg/upgrade``); each subpackage exports its own handful of
names. See ``SPEC`` section 2 for the layering: hub/publisher -> watcher -> upgrader -> flist -> node
-> supervisor.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__: str  # declared for type checkers; the value comes from __getattr__ below


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: importlib.metadata costs every process importing any
    # submodule ~40 ms, the file-writer children of a materialize included.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("zos-upgrade")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
