"""End-to-end upgrade of a sandbox node vs "download a tarball + extract + restart" (SPEC 14).

A release of ``--files`` files totalling ``--size-mb`` MB (random bytes: incompressible, the worst
case for both sides) and two services is packed into a hub served by ``zos-upgrade hub serve`` on
loopback; the node runs under a real supervisord. Each run, on a fresh node root and state:

* ``install``: first install of 1.0.0 with a cold block cache (the whole release travels);
* ``upgrade``: 1.0.0 -> 1.1.0 where 1 % of the files changed (the transaction of SPEC 11, probation 0):
  only the changed files (and the release's control files and service configs) are staged; the
  run prints how many were staged, the blocks and bytes fetched, and the blocks read from the node;
* baseline: GET the 1.1.0 tarball (``tar -czf`` of the same tree) from a plain HTTP server on loopback,
  ``tar -xzf`` it into an empty root, restart the two services through the same supervisord.

Reports medians of ``--runs`` runs with min-max, the ratio of each to the baseline of the same run,
and the bytes the upgrade downloaded vs the release size.

    .venv/bin/python benchmarks/upgrade.py [--size-mb 100] [--files 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import httpx  # noqa: E402
from _support.ours import fresh_node, install_chain  # noqa: E402

from tests.support.node import Sandbox, service_release  # noqa: E402
from tests.support.procs import free_port, serving  # noqa: E402
from tests.support.supervisord import running_supervisord  # noqa: E402
from zos_upgrade.supervisor import restart_many  # noqa: E402
from zos_upgrade.supervisor.supervisord import SupervisordClient  # noqa: E402


def make_trees(root: Path, files: int, size: int) -> dict[str, dict[str, object]]:
    each = size // files
    data = {f"data/d{i // 100:02d}/f{i:04d}.bin": os.urandom(each) for i in range(files)}
    changed = dict(data)
    for i in range(0, files, 100):  # 1 % of the files
        changed[f"data/d{i // 100:02d}/f{i:04d}.bin"] = os.urandom(each)
    return {
        "1.0.0": {**service_release(root, "1.0.0"), **data},
        "1.1.0": {**service_release(root, "1.1.0"), **changed},
    }


async def upgrade_run(box: Sandbox, sup: SupervisordClient) -> tuple[float, float, int, int]:
    (install, _), (upgrade, report) = await install_chain(
        box, sup, ["tf-zos/zos:1.0.0.fl", "tf-zos/zos:1.1.0.fl"])
    print("  upgrade phases (s): " + " ".join(f"{k}={v:.2f}" for k, v in report.phases.items()), flush=True)
    print(f"  upgrade staged {report.files_staged} files, fetched {report.blocks_fetched} blocks "
          f"({report.bytes_downloaded} bytes), read {report.blocks_from_node} blocks from the node's files",
          flush=True)
    return install, upgrade, report.bytes_downloaded, report.release_bytes


async def baseline_run(url: str, dest: Path, sup: SupervisordClient) -> float:
    started = time.perf_counter()
    dest.parent.mkdir(parents=True)
    tarball = dest.parent / "release.tar.gz"
    async with httpx.AsyncClient(timeout=120) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        with open(tarball, "wb") as out:
            async for chunk in response.aiter_bytes(1 << 20):
                out.write(chunk)
    dest.mkdir()
    await asyncio.to_thread(subprocess.run, ["tar", "-xzf", str(tarball), "-C", str(dest)], check=True)
    await restart_many(sup, ["alpha", "beta"], 5.0, poll_interval=0.05)
    return time.perf_counter() - started


def tarball_server(tree: Path, static: Path) -> tuple[list[str], int]:
    """``tar -czf`` of ``tree`` as ``<static>/release.tar.gz``, and the ``python -m http.server``
    command (and its port) that serves it on loopback."""
    static.mkdir()
    subprocess.run(["tar", "-czf", str(static / "release.tar.gz"), "-C", str(tree), "."], check=True)
    port = free_port()
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
            str(static)], port


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zu-bench-upgrade-"))
    installs, upgrades, baselines, downloaded = [], [], [], []
    release_bytes = 0
    try:
        with running_supervisord() as sd:
            sup = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)
            hub_box = Sandbox(work / "hub-side")
            trees = make_trees(hub_box.root, args.files, args.size_mb * 1_000_000)
            for version, tree in trees.items():
                hub_box.pack(f"zos:{version}.fl", tree)  # type: ignore[arg-type]
            http_cmd, port = tarball_server(hub_box.src / "tf-zos-zos:1.1.0.fl", work / "static")
            with hub_box.serving_hub(), serving(http_cmd, port):
                for run in range(args.runs):
                    # a fresh node root (the services' command lines name this path) and state
                    node = fresh_node(hub_box, work / f"run{run}")
                    install, upgrade, got, release_bytes = asyncio.run(upgrade_run(node, sup))
                    base = asyncio.run(baseline_run(f"http://127.0.0.1:{port}/release.tar.gz",
                                                    work / f"base{run}" / "root", sup))
                    installs.append(install)
                    upgrades.append(upgrade)
                    baselines.append(base)
                    downloaded.append(got)
                    print(f"run {run + 1}: install {install:.2f}s upgrade {upgrade:.2f}s "
                          f"baseline {base:.2f}s downloaded {got} of {release_bytes}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, values: list[float]) -> None:
        ratios = [v / b for v, b in zip(values, baselines, strict=True)]
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} | "
              f"{statistics.median(ratios):.2f} |")

    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), "?")
    print(f"\nmachine: nproc={os.cpu_count()} model={model} python={platform.python_version()}")
    print(f"release: {args.files} files, {args.size_mb} MB; runs: {args.runs}\n")
    print("| what | median s | min-max s | ratio to baseline |")
    print("|---|---:|---:|---:|")
    row("baseline: GET tarball + tar -xzf + restart 2 services", baselines)
    row("install 1.0.0, cold cache (whole release downloaded)", installs)
    row("upgrade 1.0.0 -> 1.1.0, 1 % of files changed", upgrades)
    share = statistics.median(downloaded) / release_bytes if release_bytes else 0.0
    print(f"\nupgrade downloaded median {statistics.median(downloaded)} bytes "
          f"(min-max {min(downloaded)}-{max(downloaded)}) of a {release_bytes}-byte release: {share:.3%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
