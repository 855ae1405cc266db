"""The ``zos-upgrade`` command: one root group, one module per command group.

Exit codes (SPEC 13): 0 success, 1 the operation failed (the message says why), 2 usage error.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

import zos_upgrade
from zos_upgrade.cli._common import run_command
from zos_upgrade.log import setup_logging

__all__ = ["main"]

# command name -> (module of zos_upgrade.cli, attribute): a command's module is imported only when
# that command runs (or help lists it), so `zos-upgrade daemon` does not load the hub server, the
# release engineer's TUF signing stack or the flist packer (issue 19: an idle daemon's memory)
_COMMANDS: dict[str, tuple[str, str]] = {
    "flist": ("flist", "command"), "hub": ("hub", "command"), "release": ("release", "command"),
    "trust": ("trust", "command"), "daemon": ("daemon", "command"), "install": ("install", "command"),
    "status": ("status", "command"), "check": ("check", "command"), "clear-failed": ("failed", "command"),
    "recover": ("recover", "command"), "rollback": ("rollback", "command"), "demo": ("demo", "command"),
    "self-test": ("selftest", "command"), "hold": ("hold", "hold"), "unhold": ("hold", "unhold"),
    "pause": ("hold", "pause"), "resume": ("hold", "resume"),
}


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        return run_command(lambda: super(_Root, self).invoke(ctx))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"zos_upgrade.cli.{module}"), attribute)
            assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
            self.add_command(command)
        return self.commands.get(cmd_name)


def _print_version(ctx: click.Context, _: click.Parameter, asked: bool) -> None:
    """``--version``: the version it was built from, and the commit when the build knew it (``make
    dist``). Looked up only when asked: finding it may import importlib.metadata, which every other
    command would pay at start-up (15-40 ms, measured with ``python -X importtime``)."""
    if not asked or ctx.resilient_parsing:
        return
    build = zos_upgrade.__build__
    commit = f" (commit {build['commit']})" if build.get("commit") else ""
    click.echo(f"zos-upgrade, version {zos_upgrade.__version__}{commit}")
    ctx.exit()


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "human", "json"]),
    default="auto",
    show_default=True,
    help="human lines on a terminal, JSON lines otherwise (auto), or force one.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details too.")
def cli(log_format: str, verbose: bool) -> None:
    """Keep a 0-OS node up to date, and publish releases for it.

    \b
    On a node:            zos-upgrade daemon --config /etc/zos-upgrade.toml
    Check a node:         zos-upgrade status --root /
    What would it do:     zos-upgrade check --config /etc/zos-upgrade.toml   (exit 100: update)
    Retry a failed release: zos-upgrade clear-failed 1.2.0 --config /etc/zos-upgrade.toml
    Back to the previous: zos-upgrade rollback --config /etc/zos-upgrade.toml
    Install a release now: zos-upgrade install ./zos:1.2.0.fl --config /etc/zos-upgrade.toml
    Pin or pause a node:  zos-upgrade hold 1.2.0 --config F   /  zos-upgrade pause --config F
    Pack a release:       zos-upgrade flist pack ./rootfs -o zos:1.2.0.fl --store dir:///srv/blocks
    Serve a hub:          zos-upgrade hub serve --root /srv/hub
    Sign a release:       zos-upgrade release add 1.2.0 --flist URL --flist-file F --key K --root DIR
    TUF-sign a hub repo:  zos-upgrade trust init --dir tf-zos; zos-upgrade trust sign --dir tf-zos F
    See it all work:      zos-upgrade demo

    Exit codes: 0 success, 1 the operation failed (the message says why), 2 usage error.
    """
    setup_logging(log_format, logging.DEBUG if verbose else logging.INFO)  # type: ignore[arg-type]



def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="zos-upgrade")


