"""Config fragments: the main file plus ``<stem>.d/*.toml`` beside it, merged in name order.

Zincati's convention: fragments are read in the order of their file names and a later one overrides
the keys of an earlier one, key by key inside each table (a fragment setting ``[source] interval``
leaves the main file's ``[source] hub`` alone); a list is a value, replaced whole. The folder is named
after the main file (``config.toml`` -> ``config.d/``, ``/etc/zos-upgrade.toml`` ->
``/etc/zos-upgrade.d/``) so a main file straight in ``/etc`` never reads a folder it does not own.

This module only reads and merges TOML documents and records which file set each key; what the keys
mean and which values are sane is :mod:`zos_upgrade.config`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from zos_upgrade.errors import ConfigError

__all__ = ["Document", "Merged", "fragment_dir", "merge", "read_documents"]


@dataclass(frozen=True)
class Document:
    path: Path
    data: dict[str, Any]


@dataclass
class Merged:
    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Path] = field(default_factory=dict)  # "table.key" -> the file that set it last


def fragment_dir(main: Path) -> Path:
    """The fragment folder of the main config file ``main``."""
    return main.with_name(main.stem + ".d")


def _read(path: Path, what: str) -> Document:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        data = msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return Document(path, data)


def _fragments(folder: Path) -> list[Path]:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except FileNotFoundError:
        return []  # no fragments: the main file alone
    except OSError as exc:
        raise ConfigError(f"cannot read config fragment folder {folder}: {exc.strerror or exc}") from exc
    # editors' backups (`10-x.toml~`) and hidden files are not fragments; a folder named *.toml is an
    # error when read, not skipped: the operator meant something by it
    return [folder / name for name in names if name.endswith(".toml") and not name.startswith(".")]


def read_documents(main: Path) -> list[Document]:
    """The main file, then each fragment in name order, each decoded (not yet validated)."""
    docs = [_read(main, "config file")]
    docs += [_read(path, "config fragment") for path in _fragments(fragment_dir(main))]
    return docs


def _merge_into(into: dict[str, Any], data: dict[str, Any], prefix: str, path: Path,
                origins: dict[str, Path]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            table = into.get(key)
            if not isinstance(table, dict):
                table = into[key] = {}
            _merge_into(table, value, f"{name}.", path, origins)
        else:
            into[key] = value
            origins[name] = path


def merge(docs: list[Document]) -> Merged:
    """Later documents override earlier keys, table by table; ``origins`` says who set each key."""
    merged = Merged()
    for doc in docs:
        _merge_into(merged.data, doc.data, "", doc.path, merged.origins)
    return merged
