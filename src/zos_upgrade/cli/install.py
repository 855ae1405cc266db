"""``zos-upgrade install FLIST_FILE|URL``: install a given release now (air-gapped nodes, first boots).

The file goes through the same trust as the daemon's releases (``sources/local.py``): in hub mode
the hub's md5 for that flist name, in publisher mode a release signed by a trusted key whose
blake2b-256 is the file's (from ``--release FILE``, the signed release object, which needs no
network; otherwise looked up on the configured publisher), or nothing with a loud
``--allow-unsigned``. Then one ordinary transaction (``Upgrader.install_from``: preflight, journal,
probation, rollback), under the node's lock: the daemon must be stopped. The operator's hold and
pause do not apply: they steer the daemon, and this is the operator's own act.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.versions import InvalidVersion, parse_version

if TYPE_CHECKING:
    from zos_upgrade.config import Config
    from zos_upgrade.publisher import Upgrade
    from zos_upgrade.sources.local import LocalFlist, Vouch
    from zos_upgrade.upgrade import UpgradeReport

__all__ = ["command"]

EXIT_RESTART = 75  # as the daemon: the release replaced the upgrader; run the daemon to finish


def _version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(parse_version(value))
    except InvalidVersion as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _candidate(location: str, version: str | None) -> LocalFlist:
    """What was named, checked before anything is locked or written."""
    from zos_upgrade.sources.local import LocalFlist

    candidate = LocalFlist(location, version)
    scheme = urlsplit(location).scheme
    if "://" in location and not candidate.is_url:
        raise click.BadParameter(f"{location!r}: only http:// and https:// URLs (or a file path)",
                                 param_hint="FLIST_FILE|URL")
    if not candidate.is_url and not Path(location).is_file():
        raise ZosUpgradeError(f"flist file {location} does not exist or is not a file")
    if candidate.is_url and not urlsplit(location).netloc:
        raise click.BadParameter(f"{location!r}: a {scheme} URL needs a host", param_hint="FLIST_FILE|URL")
    return candidate


def _release_object(path: Path) -> Upgrade:
    from zos_upgrade.publisher.base import INDEX_MAX_BYTES, decode_upgrade

    try:
        with path.open("rb") as handle:
            data = handle.read(INDEX_MAX_BYTES + 1)
    except OSError as exc:
        raise ZosUpgradeError(f"release object {path}: cannot read it: {exc.strerror or exc}") from exc
    if len(data) > INDEX_MAX_BYTES:
        raise ZosUpgradeError(f"release object {path} is larger than {INDEX_MAX_BYTES} bytes")
    return decode_upgrade(data, str(path))


@click.command(name="install", epilog="Exit codes: 0 installed, 1 refused or rolled back (nothing "
               "changed; the message says why), 2 usage error, 75 the release replaced the upgrader "
               "itself: run the daemon to finish.")
@click.argument("location", metavar="FLIST_FILE|URL")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The daemon's TOML config file (node, supervisor, and which trust applies).")
@click.option("--version", "version", callback=_version,
              help="The release's version when the file name carries none it can be told by.")
@click.option("--release", "release_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Publisher mode: the signed release object (the server's <version> document) "
                   "vouching for the file; no network needed. Without it the publisher is asked.")
@click.option("--allow-unsigned", is_flag=True,
              help="Install although nothing vouches for the file. Loud, and recorded in the manifest.")
def command(location: str, config_path: Path, version: str | None, release_path: Path | None,
            allow_unsigned: bool) -> None:
    """Install the boot release in FLIST_FILE (or at URL) now, through the daemon's trust checks.

    \b
    Examples (stop the daemon first: this takes its lock):
      zos-upgrade install ./zos:1.2.0.fl --config /etc/zos-upgrade.toml
      zos-upgrade install ./zos:1.2.0.fl --release ./1.2.0 --config /etc/zos-upgrade.toml
      zos-upgrade install https://hub.example/tf-zos/zos:1.2.0.fl --config /etc/zos-upgrade.toml
      zos-upgrade install ./zos:1.2.0.fl --allow-unsigned --config /etc/zos-upgrade.toml
    \b
    Hub mode: the file must be the hub's flist of that name in the boot link's repository (md5).
    Publisher mode: a release signed by a trusted key must pin its blake2b-256. On an empty node
    this is the first install; on a running one an ordinary upgrade (or downgrade) transaction.
    """
    from zos_upgrade.config import load_config
    from zos_upgrade.lock import DaemonLock

    candidate = _candidate(location, version)
    config = load_config(config_path)
    if release_path is not None and config.source.publisher is None:
        raise click.UsageError("--release is for publisher mode; this node follows a hub (its md5 vouches)")
    release = _release_object(release_path) if release_path is not None and not allow_unsigned else None
    if allow_unsigned:
        click.echo(f"WARNING: installing {location} UNSIGNED (--allow-unsigned): nothing vouches for its "
                   "bytes; the manifest records it", err=True)
    lock = DaemonLock(config.state_dir)
    lock.acquire()
    try:
        report, verified_by = asyncio.run(_install(config, candidate, release, allow_unsigned))
    finally:
        lock.release()
    click.echo(f"installed {report.to_version} (from {report.from_version or 'nothing'}), verified by "
               f"{verified_by}: {report.files_added} file(s) added, {report.files_replaced} replaced, "
               f"{report.files_removed} removed; services (re)started: "
               f"{', '.join(sorted(report.services_restarted)) or 'none'}")


async def _install(config: Config, candidate: LocalFlist, release: Upgrade | None,
                   allow_unsigned: bool) -> tuple[UpgradeReport, str]:
    from zos_upgrade.daemon.wiring import make_supervisor, make_upgrader
    from zos_upgrade.sources.local import LocalFileSource
    from zos_upgrade.upgrade import RestartNeeded

    supervisor = make_supervisor(config)
    closers: list[Callable[[], Awaitable[None]]] = [supervisor.aclose]
    try:
        vouch = _vouch(config, release, allow_unsigned, closers)
        upgrader = make_upgrader(config, supervisor)
        source = LocalFileSource(upgrader.flister.downloads_dir, vouch)
        try:
            report = await upgrader.install_from(source, candidate, "boot")
        except RestartNeeded as exc:
            click.echo(f"{exc}: the release replaced the upgrader itself; start the daemon "
                       "(or `zos-upgrade daemon --once`) to finish the transaction", err=True)
            raise click.exceptions.Exit(EXIT_RESTART) from exc
        manifest = upgrader.installed_boot()
        return report, str(manifest.info.get("verified_by", "?")) if manifest else "?"
    finally:
        for close in reversed(closers):
            await close()


def _vouch(config: Config, release: Upgrade | None, allow_unsigned: bool,
           closers: list[Callable[[], Awaitable[None]]]) -> Vouch:
    """The trust the config's mode calls for (clients it opens are closed by the caller)."""
    from zos_upgrade.hub.client import HubClient
    from zos_upgrade.publisher import HTTPPublisher, TrustedKeys, load_public_key
    from zos_upgrade.sources.local import HubVouch, SignedVouch, UnsignedVouch

    src = config.source
    if allow_unsigned:
        return UnsignedVouch(src.flist, src.hub) if src.hub is not None else UnsignedVouch()
    if src.publisher is not None:
        trusted = TrustedKeys([load_public_key(p) for p in config.trusted_key_paths])
        if release is not None:
            return SignedVouch(trusted, "release object " + release.flist, release=release)
        publisher = HTTPPublisher(src.publisher, trusted)
        closers.append(publisher.aclose)
        return SignedVouch(trusted, src.publisher, publisher=publisher)
    assert src.hub is not None and src.flist is not None  # the config requires hub + flist otherwise
    hub = HubClient(src.hub, cache_dir=config.state_dir / "cache" / "flists")
    closers.append(hub.aclose)

    async def hub_md5(fqdn: str) -> str:
        return (await hub.info(fqdn)).md5

    return HubVouch(src.flist, hub.base_url, hub_md5)
