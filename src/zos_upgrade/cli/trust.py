"""`zos-upgrade trust`: the TUF repository of a hub repository or a release tree (issue 15).

A repository folder DIR holds ``DIR/metadata/`` (what the hub or a web server serves) and, unless
``--keys`` says elsewhere, ``DIR/keys/`` (private keys; the root keys belong offline) and
``DIR/settings.json`` (the expiry of each role, chosen at ``init``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from zos_upgrade import fsutil
from zos_upgrade.rollout import RolloutError, parse_plan, plan_document
from zos_upgrade.trust.errors import TrustRepositoryError
from zos_upgrade.trust.keys import PASSPHRASE_ENV, KeyStore
from zos_upgrade.trust.layout import DEFAULT_EXPIRY, KEYS_DIR, METADATA_DIR, TOP_LEVEL_ROLES
from zos_upgrade.trust.repository import Change, TrustRepository

__all__ = ["command", "open_repository", "read_plan"]

SETTINGS = "settings.json"

_dir = click.option(
    "--dir",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The TUF repository folder (metadata/ inside it).",
)
_keys = click.option(
    "--keys",
    "keys_dir",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of private keys (default DIR/keys); repeat to gather keys kept apart (new keys go to "
    "the first). Passphrase: $" + PASSPHRASE_ENV + ".",
)


def _settings(folder: Path) -> dict[str, timedelta]:
    path = folder / SETTINGS
    if not path.exists():
        return dict(DEFAULT_EXPIRY)
    try:
        doc = json.loads(path.read_text())
        days = doc["expiry_days"]
        expiry = {role: timedelta(days=float(days[role])) for role in TOP_LEVEL_ROLES if role in days}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrustRepositoryError(f"{path}: not a settings file of `trust init`: {exc}") from exc
    return {**DEFAULT_EXPIRY, **expiry}


def _keystore(folder: Path, keys_dirs: Sequence[Path] | Path | None) -> KeyStore:
    if isinstance(keys_dirs, Path):
        keys_dirs = [keys_dirs]
    return KeyStore.from_env(list(keys_dirs) if keys_dirs else [folder / KEYS_DIR])


def open_repository(folder: Path, keys_dirs: Sequence[Path] | Path | None = None) -> TrustRepository:
    """The repository at ``folder`` (``metadata/`` inside), its keys in ``keys_dirs`` or ``folder/keys``."""
    keys = _keystore(folder, keys_dirs)
    return TrustRepository(folder / METADATA_DIR, keys, expiry=_settings(folder))


# a plan file is a few KB; anything far larger is not one (read in one bounded read)
_MAX_PLAN_FILE = 64 * 1024

_rollout = click.option(
    "--rollout",
    "rollout_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A phased rollout plan (JSON: start, duration or steps, failure_threshold) to sign with it.",
)


def read_plan(path: Path | None) -> dict[str, Any] | None:
    """The plan document of ``--rollout``, validated by the rollout rules before anything is signed
    (a bad plan is a RolloutError and nothing is written); None without the option."""
    if path is None:
        return None
    try:
        data = fsutil.read_at_most(path, _MAX_PLAN_FILE)
    except OSError as exc:
        raise RolloutError(f"rollout plan {path}: cannot be read: {exc}") from exc
    if data is None:
        raise RolloutError(f"rollout plan {path}: no such file")
    if len(data) > _MAX_PLAN_FILE:
        raise RolloutError(f"rollout plan {path}: larger than {_MAX_PLAN_FILE} bytes")
    where = f"rollout plan {path}"
    return {k: _whole(v, f"{where}: {k}") for k, v in plan_document(parse_plan(data, source=where)).items()}


def _whole(value: Any, where: str) -> Any:
    """The plan's numbers as integers: TUF signs canonical JSON, which has no floats (a fractional
    second or percent is refused, not rounded: rounding would change the plan that is signed)."""
    if isinstance(value, float):
        if not value.is_integer():
            raise RolloutError(f"{where} = {value:g}: signed plans take whole numbers (TUF signs canonical "
                               "JSON, which has no fractions)")
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_whole(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _done(change: Change) -> None:
    click.echo(f"signed {change.describe()}")


@click.group(name="trust")
def command() -> None:
    """Sign releases with TUF: keys, roles, targets, links, timestamps (one repository per hub repo).

    \b
    zos-upgrade trust init --dir tf-zos --root-keys 3 --root-threshold 2
    zos-upgrade trust sign --dir tf-zos zos:1.2.0.flist          (the file to sign, named as on the hub)
    zos-upgrade trust link --dir tf-zos zos:production.flist zos:1.2.0.flist [--rollout plan.json]
    zos-upgrade trust timestamp --dir tf-zos                      (cron: before timestamp expires)
    zos-upgrade trust rotate --dir tf-zos timestamp --add 1 --revoke KEYID
    zos-upgrade trust status --dir tf-zos [--json]
    zos-upgrade trust push --dir tf-zos --url https://hub.example --repo tf-zos --token T
    """


@command.command()
@_dir
@_keys
@click.option("--root-keys", default=1, show_default=True, type=int, help="N: how many root keys to make.")
@click.option(
    "--root-threshold", default=1, show_default=True, type=int, help="K: how many must sign a root."
)
@click.option(
    "--expires",
    "expires",
    multiple=True,
    metavar="ROLE=DAYS",
    help="Lifetime of a role's metadata (defaults: root=365 targets=90 snapshot=7 timestamp=1).",
)
def init(
    folder: Path, keys_dir: tuple[Path, ...], root_keys: int, root_threshold: int, expires: tuple[str, ...]
) -> None:
    """Create a new TUF repository: keys for every role and version 1 of every role.

    \b
    Example, a 2-of-3 root whose keys go to a USB stick afterwards:
      zos-upgrade trust init --dir tf-zos --root-keys 3 --root-threshold 2
      -> tf-zos/metadata/1.root.json  (give this file to the nodes: [trust] root)
    """
    expiry = dict(DEFAULT_EXPIRY)
    for item in expires:
        role, _, days = item.partition("=")
        if role not in TOP_LEVEL_ROLES:
            raise click.BadParameter(f"{item!r}: role must be one of {', '.join(TOP_LEVEL_ROLES)}")
        try:
            value = float(days)
        except ValueError:
            raise click.BadParameter(f"{item!r}: DAYS must be a number") from None
        if not 0 < value <= 3650:
            raise click.BadParameter(f"{item!r}: DAYS must be above 0 and at most 3650")
        expiry[role] = timedelta(days=value)
    if not keys_dir and (folder.resolve().parent / "versions").exists():
        # a release tree is published whole (rsync, CDN): its signing keys must never sit inside it
        raise click.UsageError(f"{folder} is inside a release tree: give --keys DIR outside the tree")
    keys = _keystore(folder, keys_dir)
    repo = TrustRepository.init(
        folder / METADATA_DIR, keys, root_keys=root_keys, root_threshold=root_threshold, expiry=expiry
    )
    fsutil.atomic_write_json(
        folder / SETTINGS,
        {"expiry_days": {r: expiry[r].total_seconds() / 86400 for r in TOP_LEVEL_ROLES}},
        indent=2,
    )
    root = repo.root.signed
    click.echo(
        f"created {folder / METADATA_DIR} (root {root.roles['root'].threshold} of "
        f"{len(root.roles['root'].keyids)} keys); keys in {keys.folder}"
    )
    click.echo(f"pin this root on the nodes: {folder / METADATA_DIR / '1.root.json'}")


@command.command()
@_dir
@_keys
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--name", help="Target name of the single FILE (default: its file name).")
@click.option("--release", "release", help="Publisher mode: sign FILE as release VERSION ...")
@click.option("--flist-url", help="... whose flist nodes download from this URL (signed).")
@click.option("--remove", "remove", multiple=True, metavar="NAME", help="Stop signing target NAME.")
@click.option(
    "--renew", type=click.Choice(TOP_LEVEL_ROLES), help="Re-sign ROLE with a fresh expiry, no other change."
)
@_rollout
@click.option("--no-rollout", "clear_rollout", is_flag=True,
              help="Sign FILE(s) without a rollout plan (a re-signed file otherwise keeps its plan).")
def sign(
    folder: Path,
    keys_dir: tuple[Path, ...],
    files: tuple[Path, ...],
    name: str | None,
    release: str | None,
    flist_url: str | None,
    remove: tuple[str, ...],
    renew: str | None,
    rollout_file: Path | None,
    clear_rollout: bool,
) -> None:
    """Add or update release targets (length, sha256, md5) and re-sign targets, snapshot, timestamp.

    \b
    Hub mode (the target name is the flist's name on the hub):
      zos-upgrade trust sign --dir tf-zos build/zos:1.2.0.flist
      zos-upgrade trust sign --dir tf-zos build/out.flist --name zos:1.2.1.flist
    Publisher mode (a release tree's repository; `latest` follows the highest version):
      zos-upgrade trust sign --dir tree/tuf F.flist --release 1.2.0 --flist-url https://cdn/zos-1.2.0.flist
    A phased rollout (nodes take the release as the plan's percentage covers their bucket):
      zos-upgrade trust sign --dir tf-zos build/zos:1.2.0.flist --rollout plan.json
    """
    actions = sum(bool(x) for x in (files, remove, renew))
    if actions != 1:
        raise click.UsageError("give FILE(s), --remove NAME or --renew ROLE (one of them)")
    if (rollout_file is not None or clear_rollout) and not files:
        raise click.UsageError("--rollout / --no-rollout go with FILE(s) to sign")
    if rollout_file is not None and clear_rollout:
        raise click.UsageError("give --rollout PLAN or --no-rollout, not both")
    plan = read_plan(rollout_file)
    if name is not None and len(files) != 1:
        raise click.UsageError("--name names a single FILE")
    if (release is None) != (flist_url is None):
        raise click.UsageError("--release VERSION and --flist-url URL go together")
    repo = open_repository(folder, keys_dir)
    if renew:
        _done(repo.renew(renew))
    elif remove:
        for target in remove:
            _done(repo.remove(target))
    elif release is not None and flist_url is not None:
        if len(files) != 1:
            raise click.UsageError("--release signs a single FILE")
        _done(repo.sign_releases([(release, files[0], flist_url)], rollout=plan, clear_rollout=clear_rollout))
    else:
        _done(repo.sign_flists([(name or f.name, f) for f in files], rollout=plan,
                               clear_rollout=clear_rollout))


@command.command()
@_dir
@_keys
@click.argument("link")
@click.argument("target")
@_rollout
def link(folder: Path, keys_dir: tuple[Path, ...], link: str, target: str, rollout_file: Path | None) -> None:
    """Point LINK (a channel such as zos:production.flist) at the signed TARGET, by signing it.

    \b
      zos-upgrade trust link --dir tf-zos zos:production.flist zos:1.2.0.flist
      zos-upgrade trust link --dir tf-zos zos:production.flist zos:1.2.0.flist --rollout plan.json
    TARGET must be signed already (`trust sign`); nodes following LINK then install TARGET. With
    --rollout the move is phased: the plan is signed on LINK's entry and wins over TARGET's own plan
    for nodes following LINK; a move without --rollout carries no plan of its own (moving the link
    again without it is how a link's plan is cleared).
    """
    plan = read_plan(rollout_file)
    _done(open_repository(folder, keys_dir).link(link, target, rollout=plan))


@command.command()
@_dir
@_keys
def timestamp(folder: Path, keys_dir: tuple[Path, ...]) -> None:
    """Re-sign timestamp with a fresh expiry (needs only the timestamp key): run it from cron.

    \b
      zos-upgrade trust timestamp --dir tf-zos && zos-upgrade trust push --dir tf-zos ...
    """
    _done(open_repository(folder, keys_dir).timestamp_only())


@command.command()
@_dir
@_keys
@click.argument("role", type=click.Choice(TOP_LEVEL_ROLES))
@click.option(
    "--add", "add", default=0, type=click.IntRange(0, 16), help="Generate this many new keys for ROLE."
)
@click.option(
    "--revoke", multiple=True, metavar="KEYID", help="Remove this key from ROLE (repeat for several)."
)
@click.option("--threshold", type=int, help="New threshold of ROLE.")
def rotate(
    folder: Path,
    keys_dir: tuple[Path, ...],
    role: str,
    add: int,
    revoke: tuple[str, ...],
    threshold: int | None,
) -> None:
    """Replace or revoke keys of ROLE: a new root version, signed by the OLD root's threshold too.

    \b
    Replace a lost or leaked timestamp key:
      zos-upgrade trust rotate --dir tf-zos timestamp --add 1 --revoke 1f2e...
    Root ceremony, 2 of 3 old root keys present:
      zos-upgrade trust rotate --dir tf-zos root --add 1 --revoke 9a8b... --keys /media/usb/keys
    """
    if not add and not revoke and threshold is None:
        raise click.UsageError("give --add N, --revoke KEYID or --threshold K")
    change, new = open_repository(folder, keys_dir).rotate(
        role, add=add, revoke=list(revoke), threshold=threshold
    )
    _done(change)
    for keyid in new:
        click.echo(f"new {role} key {keyid}")
    for keyid in revoke:
        click.echo(f"revoked {role} key {keyid}: destroy its file ({role}.{keyid[:12]}....pem) on every copy")


@command.command()
@_dir
@_keys
@click.option("--json", "as_json", is_flag=True, help="One JSON object (roles, targets).")
@click.pass_context
def status(ctx: click.Context, folder: Path, keys_dir: tuple[Path, ...], as_json: bool) -> None:
    """Each role: version, expiry, keys, threshold, and what is due (exit 1 when something expired).

    \b
      zos-upgrade trust status --dir tf-zos
      zos-upgrade trust status --dir tf-zos --json | jq '.roles[] | select(.state != "ok")'
    """
    repo = open_repository(folder, keys_dir)
    report = repo.status()
    targets: dict[str, dict[str, Any]] = {
        path: {"kind": z.kind, "link": z.link} if z.kind == "link" else {"kind": z.kind}
        for path, z in sorted(repo.zos_targets().items())
    }
    for path, z in repo.zos_targets().items():
        if z.rollout is not None:
            targets[path]["rollout"] = dict(z.rollout)
    if as_json:
        click.echo(json.dumps({"roles": [r.to_json() for r in report], "targets": targets}, indent=2))
    else:
        for r in report:
            keys = f"{r.threshold} of {len(r.keyids)} keys, {r.keys_here} here"
            expires = r.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
            click.echo(f"{r.role:<10} v{r.version:<4} expires {expires}  {r.state.upper():<7} {keys}")
        for path, info in targets.items():
            plan = f"  rollout {json.dumps(info['rollout'], sort_keys=True)}" if "rollout" in info else ""
            click.echo(f"  {path}" + (f" -> {info['link']}" if info["kind"] == "link" else "") + plan)
    if any(r.state == "expired" for r in report):
        ctx.exit(1)


@command.command()
@_dir
@_keys
@click.option("--url", envvar="ZOS_HUB_URL", required=True, help="Base URL of our hub (or $ZOS_HUB_URL).")
@click.option("--repo", "hub_repo", required=True, help="The hub repository this TUF repository signs.")
@click.option("--token", envvar="ZOS_HUB_TOKEN", required=True, help="Its write token (or $ZOS_HUB_TOKEN).")
def push(folder: Path, keys_dir: tuple[Path, ...], url: str, hub_repo: str, token: str) -> None:
    """Upload the metadata the hub lacks (new roots first, timestamp.json last).

    \b
      zos-upgrade trust push --dir tf-zos --url https://hub.example --repo tf-zos --token "$TOKEN"
    """
    from zos_upgrade.trust.push import push as push_metadata

    result = asyncio.run(push_metadata(open_repository(folder, keys_dir), url, hub_repo, token))
    click.echo(
        f"uploaded {', '.join(result.uploaded)}"
        + (f" (hub had {len(result.skipped)} already)" if result.skipped else "")
    )
