"""zos-upgrade: the 0-OS upgrade module in Python.

The public API mirrors the Go original (``pkg/upgrade``); each subpackage exports its own handful of
names. See ``SPEC`` section 2 for the layering: hub/publisher -> watcher -> upgrader -> flist -> node
-> supervisor.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zos-upgrade")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
