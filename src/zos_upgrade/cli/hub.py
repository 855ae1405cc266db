"""`zos-upgrade hub`: serve a 0-hub compatible hub, or talk to one (SPEC 6, 13)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.rollout import RolloutStatus

T = TypeVar("T")

_url = click.option(
    "--url", envvar="ZOS_HUB_URL", required=True, help="Base URL of the hub (or $ZOS_HUB_URL)."
)
_token = click.option(
    "--token", envvar="ZOS_HUB_TOKEN", help="Bearer token of your repository (or $ZOS_HUB_TOKEN)."
)


def _run(url: str, token: str | None, call: Callable[[HubClient], Awaitable[T]]) -> T:
    async def body() -> T:
        async with HubClient(url, token=token) as client:
            return await call(client)

    return asyncio.run(body())


def _print(value: Any) -> None:
    click.echo(json.dumps(msgspec.to_builtins(value), indent=2))


@click.group(name="hub")
def command() -> None:
    """Serve a 0-hub compatible hub, or talk to one."""


@command.command()
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), required=True, help="Storage folder."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML file: tokens, limits, official repositories, block folder.",
)
@click.option(
    "--blocks",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve and accept blocks from this folder (overrides the config file).",
)
def serve(root: Path, host: str, port: int, config_file: Path | None, blocks: Path | None) -> None:
    """Serve the hub stored under ROOT (one folder per repository)."""
    from zos_upgrade.hubserver import load_hub_config
    from zos_upgrade.hubserver import serve as run_server

    root.mkdir(parents=True, exist_ok=True)
    if blocks is not None:
        blocks.mkdir(parents=True, exist_ok=True)
    run_server(load_hub_config(config_file, root, blocks=blocks), host, port)


@command.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--root", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
    help="Storage folder of the hub to export.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The hub's TOML file (its block folder).",
)
@click.option(
    "--blocks",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The hub's block folder (overrides the config file).",
)
@click.option("--replace", is_flag=True, help="Swap DEST, an earlier export, for the new one.")
def export(dest: Path, root: Path, config_file: Path | None, blocks: Path | None, replace: bool) -> None:
    """Write the hub's whole read API under ROOT as a static tree at DEST, for any file server,
    bucket or CDN to serve to nodes."""
    from zos_upgrade.hubserver import load_hub_config
    from zos_upgrade.hubserver.export import export_hub

    report = asyncio.run(export_hub(load_hub_config(config_file, root, blocks=blocks), dest, replace=replace))
    click.echo(
        f"exported {report.files} files ({report.bytes} bytes copied), {report.blocks} blocks "
        f"({report.blocks_linked} hard-linked) to {report.dest}"
    )
    for skipped in report.skipped:
        click.echo(f"not exported: {skipped}", err=True)


@command.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--name", help="Store it under this name (default: the file's name).")
@_url
@_token
def upload(file: Path, name: str | None, url: str, token: str | None) -> None:
    """Upload an .flist or .fl FILE into the token's repository."""
    _print(_run(url, token, lambda c: c.upload(file, name)))


@command.command()
@click.argument("src")
@click.argument("link")
@_url
@_token
@click.option(
    "--trust-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The repository's TUF repository: sign the move there first, then push it to the hub.",
)
@click.option(
    "--trust-keys", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder of its keys (default TRUST_DIR/keys); repeat for keys kept apart.",
)
@click.option(
    "--rollout", "rollout_file", type=click.Path(dir_okay=False, path_type=Path),
    help="With --trust-dir: a phased rollout plan (JSON) signed on the link entry for this move.",
)
def link(
    src: str, link: str, url: str, token: str | None, trust_dir: Path | None, trust_keys: tuple[Path, ...],
    rollout_file: Path | None,
) -> None:
    """Point LINK at SRC (both in the token's repository), atomically.

    \b
    With a TUF repository, nodes follow the link only once it is signed:
      zos-upgrade hub link zos:1.2.0.flist zos:production.flist --url URL --token T --trust-dir tf-zos
    signs the move (SRC must be signed: `trust sign`), moves the link, pushes the metadata;
    --rollout PLAN.json phases the move (the plan is signed: an unsigned link cannot carry one).
    """
    if trust_dir is None and rollout_file is not None:
        raise click.UsageError("--rollout is signed in the TUF repository: give --trust-dir")
    if trust_dir is None:
        _run(url, token, lambda c: c.link(src, link))
        click.echo(f"{link} -> {src}")
        return
    from zos_upgrade.cli.trust import open_repository, read_plan
    from zos_upgrade.hub.names import flist_filename
    from zos_upgrade.trust.push import push

    if not token:
        raise click.UsageError("--trust-dir pushes signed metadata: give --token (or $ZOS_HUB_TOKEN)")
    plan = read_plan(rollout_file)  # a bad plan: refused before anything is signed or moved
    repo = open_repository(trust_dir, trust_keys)
    # signed first: a link the hub moved but nobody signed would only be refused by every node
    change = repo.link(flist_filename(link), flist_filename(src), rollout=plan)

    async def move_and_push(client: HubClient) -> str:
        await client.link(src, link)
        owner = await client.whoami()
        await push(repo, url, owner, token)
        return owner

    owner = _run(url, token, move_and_push)
    click.echo(f"{link} -> {src} (signed {change.describe()}, pushed to {owner})")


@command.command()
@click.argument("tag")
@click.argument("link")
@click.argument("source", metavar="REPO/NAME")
@click.option("--delete", is_flag=True, help="Remove LINK from the tag instead.")
@_url
@_token
def tag(tag: str, link: str, source: str, delete: bool, url: str, token: str | None) -> None:
    """Add LINK -> REPO/NAME to TAG of the token's repository (or remove it with --delete)."""
    repo, _, src = source.partition("/")
    if delete:
        _run(url, token, lambda c: c.untag(tag, link, repo, src))
    else:
        _run(url, token, lambda c: c.tag(tag, link, repo, src))
    click.echo(f"tags/{tag}/{link} {'removed' if delete else '-> ' + source}")


@command.command()
@click.argument("name")
@_url
@_token
def delete(name: str, url: str, token: str | None) -> None:
    """Delete NAME (an flist or a link) from the token's repository."""
    _run(url, token, lambda c: c.delete(name))
    click.echo(f"deleted {name}")


@command.command(name="ls")
@click.argument("repo", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the hub's JSON.")
@_url
def ls(repo: str | None, as_json: bool, url: str) -> None:
    """List the repositories, or the flists of REPO."""
    if repo is None:
        repos = _run(url, None, lambda c: c.repositories())
        if as_json:
            _print(repos)
        for item in [] if as_json else repos:
            click.echo(f"{item.name}{'  (official)' if item.official else ''}")
        return
    entries = _run(url, None, lambda c: c.list(repo))
    if as_json:
        _print(entries)
        return
    for entry in entries:
        target = f" -> {entry.target}" if entry.target else ""
        click.echo(f"{entry.type:<8} {entry.size:>12}  {entry.name}{target}")


@command.command()
@click.argument("fqdn", metavar="REPO/NAME")
@_url
def info(fqdn: str, url: str) -> None:
    """Show the /light object of REPO/NAME (a symlink is followed)."""
    _print(_run(url, None, lambda c: c.info(fqdn)))


@command.command(name="node-token")
@click.argument("node_id")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The hub's TOML config (its [rollout] node_secret).",
)
def node_token_command(node_id: str, config_file: Path) -> None:
    """Print the report token of NODE_ID (put it in the node's [report] token)."""
    from zos_upgrade.errors import ConfigError
    from zos_upgrade.hub.rollout import node_token, valid_node_id
    from zos_upgrade.hubserver import load_hub_config

    config = load_hub_config(config_file, config_file.parent)
    if config.node_secret is None:
        raise ConfigError(f"{config_file}: [rollout] node_secret is not set: the hub accepts no reports")
    click.echo(node_token(config.node_secret, valid_node_id(node_id)))


@command.group(name="rollout")
def rollout() -> None:
    """Watch a release's rollout (the nodes' reports), halt or resume it."""


def _status_lines(status: RolloutStatus) -> list[str]:
    counts = status.counts
    lines = [f"{status.repo}/{status.name}: " + ("HALTED" if status.halted else "rolling out")]
    if status.halt is not None:
        when = datetime.fromtimestamp(status.halt.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"  halted {when} by {status.halt.by}: {status.halt.reason}")
    for key in ("waiting", "upgraded", "failed", "rolled-back"):
        lines.append(f"  {key + ':':<13}{counts.get(key, 0):>7}")
    if status.reasons:
        lines.append("  failure reasons:")
        lines.extend(f"  {r.nodes:>7}  {r.reason}" for r in status.reasons)
    return lines


@rollout.command(name="status")
@click.argument("fqdn", metavar="REPO/NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the hub's JSON (with the history).")
@_url
def rollout_status(fqdn: str, as_json: bool, url: str) -> None:
    """Counts of REPO/NAME's reports (waiting, upgraded, failed, rolled back) and failure reasons."""
    status = _run(url, None, lambda c: c.rollout_status(fqdn))
    if as_json:
        _print(status)
        return
    for line in _status_lines(status):
        click.echo(line)


@rollout.command(name="halt")
@click.argument("fqdn", metavar="REPO/NAME")
@click.option("--reason", default="", help="Why (shown in status and on the hub page).")
@_url
@_token
def rollout_halt(fqdn: str, reason: str, url: str, token: str | None) -> None:
    """Halt REPO/NAME's rollout: nodes that have not started it do not start."""
    _run(url, token, lambda c: c.halt(fqdn, reason))
    click.echo(f"{fqdn}: halted")


@rollout.command(name="resume")
@click.argument("fqdn", metavar="REPO/NAME")
@_url
@_token
def rollout_resume(fqdn: str, url: str, token: str | None) -> None:
    """Resume REPO/NAME's rollout (it halts again on new failures past the threshold)."""
    _run(url, token, lambda c: c.resume(fqdn))
    click.echo(f"{fqdn}: resumed")


@rollout.command(name="plan")
@click.argument("fqdn", metavar="REPO/NAME")
@click.argument("plan_file", metavar="PLAN.json",
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_url
@_token
def rollout_plan(fqdn: str, plan_file: Path, url: str, token: str | None) -> None:
    """Give the hub REPO/NAME's rollout plan (the document its signed metadata carries): the hub halts
    the rollout at the plan's failure_threshold."""
    from zos_upgrade.rollout import parse_plan

    data = plan_file.read_bytes()
    plan = parse_plan(data, source=str(plan_file))  # refused here before the hub sees it
    _run(url, token, lambda c: c.set_plan(fqdn, data))
    threshold = "none" if plan.failure_threshold is None else f"{plan.failure_threshold:g} %"
    click.echo(f"{fqdn}: plan set (failure threshold {threshold})")
