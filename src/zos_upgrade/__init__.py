"""zos-upgrade: the 0-OS upgrade module in Python.

The public API mirrors the Go original (``pkg/upgrade``); each subpackage exports its own handful of
names. See ``SPEC`` section 2 for the layering: hub/publisher -> watcher -> upgrader -> flist -> node
-> supervisor.

**The version** (``__version__``, ``--version``) is the one the program was built from. A one-file
executable (``make dist``) carries it as a stamp, the last line of the executable file
(:data:`STAMP_PREFIX` + JSON), so one build can be stamped again as another version without being
built twice (``packaging/stamp.py``); a wheel or sdist built by ``make dist`` carries it in
``zos_upgrade/_build.json``; a source tree has only its package metadata.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["STAMP_PREFIX", "__build__", "__version__", "read_stamp", "write_stamp"]

__version__: str  # declared for type checkers; the value comes from __getattr__ below
__build__: dict[str, str]  # {"version": ..., "commit": ...}: what --version prints

# the stamp line at the end of a one-file executable; its bootloader finds its archive however much
# follows it (tests/dist prove it), and a stamp stays well inside the last STAMP_WINDOW bytes
STAMP_PREFIX = b"\nZOS-UPGRADE-BUILD "
STAMP_WINDOW = 4096


def read_stamp(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The build stamp at the end of the file ``path`` (None: no stamp, or not one we can read)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - STAMP_WINDOW))
            tail = handle.read(STAMP_WINDOW)
    except OSError:
        return None
    at = tail.rfind(STAMP_PREFIX)
    if at < 0:
        return None
    try:
        found = json.loads(tail[at + len(STAMP_PREFIX):].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(found, dict) or not isinstance(found.get("version"), str):
        return None
    return {str(k): str(v) for k, v in found.items()}


def write_stamp(path: str | os.PathLike[str], build: dict[str, str]) -> None:
    """Stamp the file ``path`` with ``build`` (its ``version`` at least), replacing a stamp it has."""
    if not isinstance(build.get("version"), str) or not build["version"]:
        raise ValueError(f"a build stamp needs a version, got {build!r}")
    line = STAMP_PREFIX + json.dumps(build, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    if len(line) > STAMP_WINDOW // 2:
        raise ValueError(f"a build stamp is at most {STAMP_WINDOW // 2} bytes, got {len(line)}")
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - STAMP_WINDOW)
        handle.seek(start)
        at = handle.read(STAMP_WINDOW).rfind(STAMP_PREFIX)
        handle.seek(start + at if at >= 0 else size)
        handle.truncate()
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _build_file() -> dict[str, str] | None:
    try:
        found = json.loads((Path(__file__).parent / "_build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


# A frozen program reads its stamp NOW, at start-up: a self-update renames a new program over this
# file, and a stamp read later would be the new program's.
_FROZEN_STAMP = read_stamp(sys.executable) if getattr(sys, "frozen", False) else None


def _installed_version() -> str | None:
    """The ``Version`` of the first ``zos_upgrade-*.dist-info`` on ``sys.path`` (the one
    importlib.metadata would answer), read directly: importlib.metadata's email, zip and csv parsers
    would stay in an idle daemon's memory (about 2 MiB). None: no such folder, ask importlib."""
    for entry in sys.path:
        try:
            found = sorted(Path(entry or ".").glob("zos_upgrade-*.dist-info"))
        except OSError:
            continue
        for folder in found:
            try:
                head = (folder / "METADATA").read_text(encoding="utf-8").split("\n\n", 1)[0]
            except (OSError, UnicodeDecodeError):
                continue
            for line in head.splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
    return None


def __getattr__(name: str) -> object:
    # Looked up on first use, not at import: importlib.metadata costs every process importing any
    # submodule ~40 ms, the file-writer children of a materialize included.
    if name not in ("__version__", "__build__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    build = _FROZEN_STAMP or _build_file()
    installed = _installed_version() if build is None else None
    if installed is not None:
        build = {"version": installed}
    if build is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            build = {"version": version("zos-upgrade")}
        except PackageNotFoundError:  # running from a source tree that was never installed
            build = {"version": "0.0.0+unknown"}
    globals().update(__version__=build["version"], __build__=build)
    return globals()[name]
