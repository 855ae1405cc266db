"""`zos-upgrade demo`: the whole upgrade flow in a temporary sandbox."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command(name="demo")
@click.option("--keep", is_flag=True, help="Keep the sandbox (logs, hub, node) instead of deleting it.")
@click.pass_context
def command(ctx: click.Context, keep: bool) -> None:
    """Run the whole upgrade flow in a temporary sandbox, with real processes, and print a summary.

    \b
    A hub on loopback serves release 1.0.0 of a small sample node (two Python services and their
    configs); the daemon first-installs it under a real supervisord. Release 1.1.0 (one service
    changed, a file added, one removed, a `migrate` hook converting a data file) is published and
    the running daemon upgrades to it; a broken 1.2.0 (a service that dies at start) is published
    and the daemon rolls back to 1.1.0. Every process the demo starts is stopped at the end.

    Exit codes: 0 all of that happened, 1 a step did not (the message says which), 130 interrupted.
    """
    from zos_upgrade.demo import run_demo

    ctx.exit(run_demo(keep=keep))
