"""``status --config F --show-config``: the merged config, each key with the file that set it.

JSON shape (``--json``)::

    {"files": ["/etc/zos-upgrade.toml", "/etc/zos-upgrade.d/10-canary.toml"],   # merge order
     "keys": {"source.interval": {"value": 60.0, "origin": "/etc/zos-upgrade.d/10-canary.toml"},
              "upgrade.probation": {"value": 30.0, "origin": null}, ...}}       # null: the default
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from zos_upgrade.config import LoadedConfig, load_config_files
from zos_upgrade.configd import fragment_dir

__all__ = ["show_config"]


def render_config(loaded: LoadedConfig) -> str:
    main = loaded.files[0]
    lines = [f"config file:    {main}", f"fragments:      {fragment_dir(main)}/*.toml, in name order, "
             "later ones override earlier keys"]
    lines += [f"  {path}" for path in loaded.files[1:]] or ["  (none)"]
    rows = [(key, json.dumps(value), str(origin) if origin else "default")
            for key, value, origin in loaded.rows()]
    key_width = max(len(key) for key, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines += [f"{key:<{key_width}}  {value:<{value_width}}  {origin}" for key, value, origin in rows]
    return "\n".join(lines)


def show_config(path: Path, as_json: bool) -> None:
    """Print the merged config at ``path`` (ConfigError, exit 1, when it or a fragment is bad)."""
    loaded = load_config_files(path)
    if as_json:
        doc = {
            "files": [str(p) for p in loaded.files],
            "keys": {key: {"value": value, "origin": str(origin) if origin else None}
                     for key, value, origin in loaded.rows()},
        }
        click.echo(json.dumps(doc))
    else:
        click.echo(render_config(loaded))
