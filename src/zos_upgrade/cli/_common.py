"""What every command shares: error-to-exit-code mapping and the 'comes later' placeholder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from zos_upgrade.errors import ZosUpgradeError

T = TypeVar("T")


def run_command(body: Callable[[], T]) -> T:
    """Run a command body; a deliberate error becomes exit 1 with its message on stderr."""
    try:
        return body()
    except ZosUpgradeError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


def placeholder_group(name: str, summary: str, issue: int) -> click.Group:
    """A command group whose work lands with a later issue: it says so and exits 2, never pretends."""

    @click.group(
        name=name,
        invoke_without_command=True,
        help=f"{summary}\n\nNot available yet: this arrives with issue #{issue}; it exits 2.",
    )
    @click.pass_context
    def group(ctx: click.Context, /, **_: Any) -> None:
        click.echo(f"zos-upgrade {name}: not available yet (arrives with issue #{issue}).", err=True)
        ctx.exit(2)

    return group


def locate_node(config: Path | None, root: Path | None) -> tuple[Path, Path]:
    """(node root, state dir) from ``--config FILE`` or ``--root DIR`` (default ``/``), never both."""
    from zos_upgrade.config import NodeConfig, load_config

    if config is not None and root is not None:
        raise click.UsageError("give --config or --root, not both")
    if config is not None:
        cfg = load_config(config)
        return cfg.root, cfg.state_dir
    node_root = root if root is not None else Path("/")
    return node_root, node_root / NodeConfig().state_dir.lstrip("/")
