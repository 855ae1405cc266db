"""`zos-upgrade release`: make signing keys, sign releases into a tree, list/verify a tree, serve it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from zos_upgrade import fsutil
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.publisher.base import LatestNotListed, PublisherError, Upgrade, check_latest_listed
from zos_upgrade.publisher.http import HTTPPublisher
from zos_upgrade.publisher.signing import (
    TrustedKeys,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
)
from zos_upgrade.publisher.tree import ReleaseTree
from zos_upgrade.trust.repository import TrustRepository
from zos_upgrade.versions import Version, parse_version


@click.group(name="release")
def command() -> None:
    """Sign and publish releases for a release server (versions, latest, signed release objects).

    \b
    zos-upgrade release keygen --out signer            -> signer.key (0600), signer.pub
    zos-upgrade release add 1.2.0 --flist URL --flist-file F --key signer.key --root DIR
    zos-upgrade release ls --root DIR --key signer.pub  (or --url URL)
    zos-upgrade release withdraw 1.2.0 --root DIR      -> no longer offered to nodes
    zos-upgrade release serve --root DIR --port 8080
    """


@command.command()
@click.option(
    "--out", "prefix", required=True, help="Writes PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub."
)
def keygen(prefix: str) -> None:
    """Create an ed25519 signing key pair; never overwrites an existing file."""
    private_path, public_path = Path(prefix + ".key"), Path(prefix + ".pub")
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise PublisherError(f"{path}: already exists; refusing to overwrite a key")
    key = generate_key()
    fsutil.atomic_write_bytes(private_path, private_key_pem(key), mode=0o600)
    fsutil.atomic_write_bytes(public_path, public_key_pem(key.public_key()), mode=0o644)
    click.echo(f"key {key_id(key.public_key())}: private {private_path}, public {public_path}")


@command.command()
@click.argument("version")
@click.option("--flist", "flist_url", required=True, help="URL nodes download the release flist from.")
@click.option(
    "--flist-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The same flist, locally: its blake2b-256 is signed as `hash`.",
)
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path), help="Private key (PEM).")
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path), help="Release tree.")
@click.option("--transaction-id", default="", help="Free text carried (and signed) in the release.")
@click.option(
    "--trust-keys", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Keys of the tree's TUF repository (ROOT/tuf, made by `trust init --dir ROOT/tuf --keys K`): "
    "the release is signed there too, and `latest` follows the highest version (repeatable).",
)
@click.option(
    "--rollout", "rollout_file", type=click.Path(dir_okay=False, path_type=Path),
    help="With --trust-keys: a phased rollout plan (JSON) signed with the release in ROOT/tuf.",
)
def add(
    version: str, flist_url: str, flist_file: Path, key_path: Path, root: Path, transaction_id: str,
    trust_keys: tuple[Path, ...], rollout_file: Path | None,
) -> None:
    """Sign VERSION and add it to the tree; rewrites `versions` and `latest` atomically.

    \b
    With a TUF repository in ROOT/tuf (what nodes believe), give its keys:
      zos-upgrade release add 1.2.0 --flist URL --flist-file F --key K --root DIR --trust-keys KEYS
    A phased rollout (signed in ROOT/tuf only: the unsigned release objects cannot carry one):
      zos-upgrade release add 1.2.0 ... --trust-keys KEYS --rollout plan.json
    """
    if rollout_file is not None and not trust_keys:
        raise click.UsageError("--rollout is signed in the tree's TUF repository: give --trust-keys")
    from zos_upgrade.cli.trust import read_plan

    plan = read_plan(rollout_file)  # a bad plan: refused before the tree or its TUF repository change
    repo = _tree_repository(root, trust_keys)
    upgrade = ReleaseTree(root).add(
        version, flist_url=flist_url, flist_file=flist_file, key=load_private_key(key_path),
        transaction_id=transaction_id,
    )
    click.echo(f"added {upgrade.version}: flist {upgrade.flist} hash {upgrade.hash} key {upgrade.key_id}")
    if repo is not None:
        change = repo.sign_releases([(str(upgrade.version), flist_file, upgrade.flist)], rollout=plan)
        click.echo(f"TUF: signed {change.describe()} in {repo.metadata_dir}")


@command.command()
@click.argument("version")
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path), help="Release tree.")
@click.option(
    "--trust-keys", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Keys of the tree's TUF repository (ROOT/tuf): the release is no longer signed there either.",
)
def withdraw(version: str, root: Path, trust_keys: tuple[Path, ...]) -> None:
    """Stop offering VERSION to nodes (a bad release): takes it off `versions` (and `latest` back).

    Nodes already on VERSION stay on it until a newer release is added; nodes below it are no longer
    taken through it. Its signed object is kept, so VERSION can never be published again with another
    flist: fix forward with a new version. With a TUF repository in ROOT/tuf, give --trust-keys:
    VERSION stops being a signed target and the signed `latest` moves back too.
    """
    repo = _tree_repository(root, trust_keys)
    latest = ReleaseTree(root).withdraw(version)
    click.echo(f"withdrew {version}; latest is {latest}")
    if repo is not None:
        click.echo(f"TUF: signed {repo.withdraw_release(str(parse_version(version))).describe()}")


def _tree_repository(root: Path, trust_keys: tuple[Path, ...]) -> TrustRepository | None:
    """The tree's TUF repository (ROOT/tuf) when it has one; refused without its keys."""
    from zos_upgrade.cli.trust import open_repository
    from zos_upgrade.trust.layout import METADATA_DIR, PUBLISHER_TUF_DIR

    tuf_dir = root / PUBLISHER_TUF_DIR
    if not trust_keys and not (tuf_dir / METADATA_DIR).is_dir():
        return None
    if not trust_keys:
        raise click.UsageError(
            f"{tuf_dir} holds a TUF repository: give --trust-keys so the release is signed there too"
        )
    return open_repository(tuf_dir, trust_keys)  # opened (and verified) before anything is written


@dataclass
class _Listing:
    versions: list[Version]
    latest: str  # shown as-is; "" when unknown
    objects: dict[str, Upgrade | ZosUpgradeError] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _list_tree(root: Path, trusted: TrustedKeys | None) -> _Listing:
    tree = ReleaseTree(root)
    versions = tree.versions()
    latest = tree.latest()
    listing = _Listing(versions, "" if latest is None else str(latest))
    if latest is not None:
        try:
            check_latest_listed(latest, versions, str(root / "latest"))
        except LatestNotListed as exc:
            listing.problems.append(f"{type(exc).__name__}: {exc}")
    for version in versions:
        try:
            upgrade = tree.get(version)
            if trusted is not None:
                trusted.verify(upgrade, version, str(root / str(version)))
            listing.objects[str(version)] = upgrade
        except ZosUpgradeError as exc:
            listing.objects[str(version)] = exc
    return listing


async def _list_url(url: str, trusted: TrustedKeys | None) -> _Listing:
    async with HTTPPublisher(url, trusted) as publisher:
        listing = _Listing(await publisher.list(), "")
        try:
            listing.latest = str(await publisher.latest())
        except ZosUpgradeError as exc:
            listing.problems.append(f"{type(exc).__name__}: {exc}")
        for version in listing.versions:
            try:
                listing.objects[str(version)] = await publisher.get(version)
            except ZosUpgradeError as exc:
                listing.objects[str(version)] = exc
    return listing


@command.command(name="ls")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), help="A release tree.")
@click.option("--url", help="A release server's base URL.")
@click.option(
    "--key", "key_paths", multiple=True, type=click.Path(path_type=Path),
    help="Trusted public key (PEM); repeat for several. Verifies every release's signature.",
)
@click.pass_context
def ls(ctx: click.Context, root: Path | None, url: str | None, key_paths: tuple[Path, ...]) -> None:
    """List the versions of a tree or server, mark the latest; with --key verify each (exit 1 on failure)."""
    if (root is None) == (url is None):
        raise click.UsageError("give exactly one of --root DIR and --url URL")
    trusted = TrustedKeys(load_public_key(p) for p in key_paths) if key_paths else None
    listing = _list_tree(root, trusted) if root is not None else asyncio.run(_list_url(str(url), trusted))
    failures = 0
    for version in listing.versions:
        name = str(version)
        outcome = listing.objects.get(name)
        mark = "  (latest)" if name == listing.latest else ""
        if isinstance(outcome, ZosUpgradeError):
            failures += 1
            click.echo(f"{name}{mark}  FAILED {type(outcome).__name__}: {outcome}")
        elif trusted is not None and outcome is not None:
            click.echo(f"{name}{mark}  signature ok (key {outcome.key_id or '?'})")
        else:
            click.echo(f"{name}{mark}")
    for problem in listing.problems:
        click.echo(f"FAILED {problem}")
    if not listing.versions:
        click.echo("no versions published")
    if failures or listing.problems:
        click.echo(f"{failures + len(listing.problems)} problem(s) found", err=True)
        ctx.exit(1)


@command.command()
@click.option("--root", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
def serve(root: Path, host: str, port: int) -> None:
    """Serve the release tree over HTTP (ETag/304, Cache-Control, JSON), for development."""
    from zos_upgrade.publisher.server import serve as serve_tree

    serve_tree(root, host, port)
