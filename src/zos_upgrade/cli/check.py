"""``zos-upgrade check``: what the daemon's next round would do, changing nothing on the node.

The daemon's own policies, sources and failed-release memory decide which release comes next
(``daemon/check.py``); the Upgrader's plan says what it would change (``upgrade/preview.py``). The
flist file is downloaded into a temporary folder outside the state directory and deleted at the
end; no block is fetched. Exit codes follow ``dnf check-update``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from zos_upgrade.config import Config
    from zos_upgrade.daemon.check import NodeCheck
    from zos_upgrade.upgrade.preview import Preview

__all__ = ["command", "render_json", "render_text"]

DEFAULT_CONFIG = Path("/etc/zos-upgrade.toml")


def _result(check: NodeCheck) -> str:
    if check.errors or check.recovery:
        return "error"
    if check.refused:
        return "refused"
    if check.previews:
        return "update-available"
    return "held" if check.held else "up-to-date"


def _transaction(preview: Preview) -> dict[str, Any]:
    plan = preview.plan
    return {
        "key": preview.key, "source": preview.source, "from_version": preview.from_version,
        "to_version": preview.to_version, "compatible": preview.compatible, "refused": preview.refused,
        "add": plan.add if plan else [], "replace": plan.replace if plan else [],
        "remove": plan.remove if plan else [],
        "services_start": plan.services_start if plan else [],
        "services_restart": plan.services_restart if plan else [],
        "services_remove": plan.services_remove if plan else [],
        "program_update": plan.program_update if plan else False,
        "hooks": preview.hooks, "blocks_total": preview.blocks_total,
        "blocks_missing": preview.blocks_missing,
        "download_bytes": preview.download_bytes, "preflight": preview.preflight,
        "preflight_ok": preview.preflight_ok,
    }


def render_json(check: NodeCheck) -> str:
    return json.dumps({
        "result": _result(check), "exit_code": check.exit_code, "current_version": check.current_version,
        "recovery": check.recovery, "held": check.held, "errors": check.errors, "refused": check.refused,
        "transactions": [_transaction(p) for p in check.previews],
    }, sort_keys=True)


def _names(names: list[str]) -> str:
    return ", ".join(names) or "-"


def _render_preview(preview: Preview) -> list[str]:
    target = preview.to_version or "uninstall"
    lines = [f"{preview.key} {preview.from_version or 'nothing'} -> {target} ({preview.source})"]
    if preview.compatible is not None:
        lines.append(f"  compatible: {preview.compatible}")
    if preview.refused:
        lines.append(f"  REFUSED:    {preview.refused}")
    plan = preview.plan
    if plan is not None:
        lines.append(f"  files:      {len(plan.add)} added, {len(plan.replace)} replaced, "
                     f"{len(plan.remove)} removed")
        for mark, paths in (("+", plan.add), ("~", plan.replace), ("-", plan.remove)):
            lines += [f"    {mark} /{rel}" for rel in paths]
        lines.append(f"  services:   restart {_names(plan.services_restart)}; start "
                     f"{_names(plan.services_start)}; remove {_names(plan.services_remove)}")
        if plan.program_update:
            lines.append("  self-update: the upgrader's own program is replaced")
        lines.append(f"  hooks:      {_names(preview.hooks)}")
        lines.append(f"  download:   {preview.blocks_missing} of {preview.blocks_total} blocks, "
                     f"{preview.download_bytes} bytes (plain size; the compressed transfer is smaller)")
    failed = {name: why for name, why in preview.preflight.items() if why != "ok"}
    if failed:
        lines += [f"  preflight:  FAILS {name}: {why}" for name, why in failed.items()]
    else:
        lines.append(f"  preflight:  ok ({', '.join(preview.preflight)})")
    return lines


def render_text(check: NodeCheck) -> str:
    lines = [f"current version: {check.current_version}"]
    if check.recovery:
        lines.append(f"recovery:        {check.recovery}")
    lines += [f"error:           {e}" for e in check.errors]
    lines += [f"held:            {h}" for h in check.held]
    for preview in check.previews:
        lines += _render_preview(preview)
    words = {"error": "the check failed", "refused": "the next round would refuse it",
             "update-available": "update available", "held": "nothing to apply (held)",
             "up-to-date": "up to date"}
    lines.append(f"{words[_result(check)]} (exit {check.exit_code})")
    return "\n".join(lines)


async def _check(config: Config) -> NodeCheck:
    from zos_upgrade.daemon.check import PlanningUpgrader, check_node
    from zos_upgrade.daemon.wiring import build

    # outside the state directory: the flist files the sources download are not node state
    with tempfile.TemporaryDirectory(prefix="zos-upgrade-check-") as folder:
        parts = build(config, check_into=Path(folder))
        try:
            assert isinstance(parts.upgrader, PlanningUpgrader)
            return await check_node(parts, parts.upgrader)
        finally:
            await parts.aclose()


@click.command(name="check")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_CONFIG, show_default=True, help="The daemon's TOML config file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text (shape in "
              "docs/operations.md).")
@click.pass_context
def command(ctx: click.Context, config_path: Path, as_json: bool) -> None:
    """Show what the daemon's next round would do, changing nothing.

    \b
    The release it would move to (or why none: up to date, held as failed), the files added,
    replaced and removed, the services restarted, the hooks that would run, the blocks the node
    lacks (what would be downloaded) and whether preflight passes. Only the release's flist
    file is downloaded, into a temporary folder that is deleted; the node, its state directory
    and its block cache are not written.

    \b
    Examples:
      zos-upgrade check --config /etc/zos-upgrade.toml
      zos-upgrade check --json | jq .transactions[0].add
      zos-upgrade check; [ $? -eq 100 ] && echo "an update is waiting"

    \b
    Exit codes:
      0    nothing to do: up to date, or every candidate is held back
      1    the check failed (bad config, hub unreachable), or the next round would refuse or
           fail its release (incompatible, preflight, plan), or a transaction awaits recovery
      2    usage error
      100  an update is available and passes every check made here
    """
    from zos_upgrade.config import load_config

    check = asyncio.run(_check(load_config(config_path)))
    click.echo(render_json(check) if as_json else render_text(check))
    ctx.exit(check.exit_code)
