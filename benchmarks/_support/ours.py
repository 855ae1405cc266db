"""Our side of an end-to-end benchmark: releases published with our CLI into a hub's storage, and
fresh sandbox nodes that install them through the real Upgrader, over HTTP from ``zos-upgrade hub
serve``, restarting their services through a real supervisord (probation 0: not part of the figure).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.node import Sandbox, install_hub_flist
from tests.support.procs import REPO, zos_upgrade_cmd
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.upgrade import UpgradeReport

# the chunking modes of `flist pack`: "fixed" (always) and "cdc" where the CLI offers --chunking
CHUNKING = ("fixed", "cdc")


def chunking_modes() -> list[str]:
    """The modes this checkout's ``flist pack`` has (``--chunking cdc`` is optional)."""
    helptext = subprocess.run(zos_upgrade_cmd("flist", "pack", "--help"), capture_output=True, text=True,
                              cwd=REPO, check=True).stdout
    return list(CHUNKING) if "--chunking" in helptext else ["fixed"]


def packer_store(hub_box: Sandbox) -> Path:
    """Where :func:`publish` packs blocks: the packing machine's store, not the hub's."""
    return hub_box.base / "packer-blocks"


def publish(tree: Path, hub_box: Sandbox, repo: str, name: str, chunking: str = "fixed") -> float:
    """``zos-upgrade flist pack`` of ``tree`` into ``<hub>/<repo>/<name>``; returns the seconds it
    took. The blocks go to :func:`packer_store` until :func:`hand_over` gives them to the hub."""
    (hub_box.hub_root / repo).mkdir(parents=True, exist_ok=True)
    cmd = zos_upgrade_cmd("flist", "pack", str(tree), "-o", str(hub_box.hub_root / repo / name),
                          "--store", f"dir://{packer_store(hub_box)}")
    if chunking != "fixed":
        cmd += ["--chunking", chunking]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"flist pack {tree} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def hand_over(hub_box: Sandbox) -> None:
    """Move the packed blocks into the store the hub serves. The flists record the packer's
    ``dir://`` store, which a node tries first: were it still there, the node would read its blocks
    from the local disk and never over HTTP. Gone, as on a real node, every block comes from the hub
    (the release's store, the fallback)."""
    if any(hub_box.blocks.iterdir()):
        raise RuntimeError(f"{hub_box.blocks} is not empty: the blocks are handed over once")
    hub_box.blocks.rmdir()
    packer_store(hub_box).rename(hub_box.blocks)


def fresh_node(hub_box: Sandbox, base: Path, hub_url: str = "") -> Sandbox:
    """A node with an empty root (the path the services' command lines name: ``hub_box.root``) and
    state, following ``hub_box``'s hub at ``hub_url`` (default: the hub itself)."""
    shutil.rmtree(hub_box.root, ignore_errors=True)
    node = Sandbox(base, root=hub_box.root)
    node.hub_root, node.blocks = hub_box.hub_root, hub_box.blocks
    node.hub_url = hub_url or hub_box.hub_url
    return node


async def install_chain(node: Sandbox, sup: SupervisordClient, fqdns: Sequence[str],
                        between: Callable[[int], None] = lambda _i: None,
                        ) -> list[tuple[float, UpgradeReport]]:
    """Install each of ``fqdns`` in turn (a first install, then upgrades); the seconds and report of
    each. ``between(i)`` runs untimed before step ``i`` and once more after the last."""
    timings = []
    async with node.hub_client() as hub:
        upgrader = node.upgrader(sup, probation=0.0)
        for index, fqdn in enumerate(fqdns):
            between(index)
            started = time.perf_counter()
            report = await install_hub_flist(upgrader, hub, fqdn)
            timings.append((time.perf_counter() - started, report))
        between(len(fqdns))
    return timings


async def service_start_seconds(sup: SupervisordClient, tree: Path) -> float:
    """The seconds supervisord takes to start the services of the release ``tree`` as a first install
    does (each config installed, monitored, started): issue 19 adds this to ``curl | tar``'s time
    for the Upgrader's baseline. The programs get names of their own (the Upgrader's services of
    the same release may be running) and are stopped and removed afterwards, untimed."""
    from zos_upgrade.supervisor.base import restart_many
    from zos_upgrade.supervisor.config import parse_service_config
    from zos_upgrade.upgrade.services import remove_services

    yamls = sorted((tree / "etc/zinit").glob("*.yaml"))
    configs = {f"baseline-{path.stem}": path.read_text() for path in yamls}
    if not configs:
        raise RuntimeError(f"{tree}: no service configs under etc/zinit")
    started = time.perf_counter()
    for name, text in configs.items():
        await sup.install_config(name, parse_service_config(text, source=name))
    await restart_many(sup, list(configs), 2.0, poll_interval=0.05)
    seconds = time.perf_counter() - started
    await remove_services(sup, list(configs), stop_timeout=2.0, sleep=asyncio.sleep, clock=time.monotonic)
    return seconds
