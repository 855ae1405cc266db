"""`zos-upgrade daemon`: the node's upgrade loop."""

from __future__ import annotations

from pathlib import Path

import click

from zos_upgrade.lazytls import import_asyncio_without_tls

# before anything imports asyncio: OpenSSL loads when TLS is first needed, not in an idle daemon
import_asyncio_without_tls()

from zos_upgrade.daemon import EXIT_FAILED, EXIT_OK, EXIT_RESTART  # noqa: E402

__all__ = ["command"]


@click.command(
    name="daemon",
    help=f"""Run the node's upgrade loop.

    \b
    Start-up: take the node's lock (one daemon per node), sweep stale mounts, recover an unfinished
    transaction, rebuild the boot files from the install manifests, first-install the boot flist
    when the node has none, install/uninstall bins by diff; then follow the hub or release server
    and apply each newer release as one crash-safe transaction. SIGTERM lets a running
    transaction finish or roll back, then exits {EXIT_OK}.

    \b
    Exit codes:
      {EXIT_OK}   stopped by a signal, or (--once) the node is up to date
      {EXIT_FAILED}   the operation failed: bad config, lock held, or (--once) an upgrade failed
          and was rolled back (the message and the status file say why)
      2   usage error
      {EXIT_RESTART}  restart needed: the upgrader replaced its own program; start it again to
          finish the transaction (the supervisor does this)
    """,
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The daemon's TOML config file.")
@click.option("--once", is_flag=True, help="Recover, check once, apply what is due, then exit.")
@click.option("--list-crash-points", is_flag=True,
              help="Print the transaction's named crash points, one per line, in order, and exit.")
@click.pass_context
def command(ctx: click.Context, config_path: Path | None, once: bool, list_crash_points: bool) -> None:
    if list_crash_points:
        from zos_upgrade.upgrade.crash import CRASH_POINTS

        for point in CRASH_POINTS:
            click.echo(point)
        return
    if config_path is None:
        raise click.UsageError("--config FILE is required (or --list-crash-points)")
    from zos_upgrade.config import TrustRequired, load_config
    from zos_upgrade.daemon import run_daemon

    try:
        config = load_config(config_path)
    except TrustRequired as exc:  # a config that must be fixed before the node may run at all
        click.echo(f"zos-upgrade daemon: {type(exc).__name__}: {exc}", err=True)
        ctx.exit(2)
    ctx.exit(run_daemon(config, once=once, config_file=config_path))
