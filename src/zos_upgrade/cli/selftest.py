"""`zos-upgrade self-test`: prove this program starts and carries what the daemon runs on.

A self-update starts the new program this way before handing over to it (``upgrade/probe.py``): with
``ZOS_UPGRADE_PROBE_MARKER`` and ``ZOS_UPGRADE_PROBE`` in its environment it writes the start-up
marker the old program waits for. Run by hand it checks an installed executable.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import click

__all__ = ["command"]

# what the daemon imports lazily or loads from package data: a one-file build that forgot one of
# them would start, then fail in the middle of its first transaction
_STACK = (
    "zos_upgrade.daemon.wiring",   # every layer the daemon is wired from
    "zos_upgrade.flist.v1.reader", "zos_upgrade.flist.v2.reader", "zos_upgrade.flist.stores.zdb",
    "cryptography.hazmat.primitives.ciphers.aead", "msgspec", "cramjam", "capnp", "redis", "xxtea",
)


@click.command(name="self-test", help="""Check that this program starts: import the daemon's stack,
    load the flist schema and (with --config) the config, then print the version. With
    ZOS_UPGRADE_PROBE_MARKER set (a self-update's start-up probe), write the marker it names.""")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A config file the daemon would run with: it must load.")
def command(config_path: Path | None) -> None:
    from zos_upgrade import __version__
    from zos_upgrade.flist.v1.schema import load_schema
    from zos_upgrade.fsutil import atomic_write_json
    from zos_upgrade.upgrade.probe import MARKER_ENV, NONCE_ENV

    for name in _STACK:
        importlib.import_module(name)
    load_schema()
    if config_path is not None:
        from zos_upgrade.config import load_config

        load_config(config_path)
    marker = os.environ.get(MARKER_ENV)
    if marker:
        atomic_write_json(marker, {"nonce": os.environ.get(NONCE_ENV, ""), "version": __version__,
                                   "pid": os.getpid()})
    click.echo(f"self-test passed: zos-upgrade {__version__}")
