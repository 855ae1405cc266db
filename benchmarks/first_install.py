"""A first install vs ``curl | tar -xzf`` of the same tree (issue 19, item 2, node side).

Run: ``.venv/bin/python benchmarks/first_install.py --runs 3`` (a few minutes on 2 cores;
``--quick`` for a 20 MB smoke run; ``--skip-upgrader`` for the unpack rows alone). It generates the
issue's tree (1,002 files, ~110 MB, half random bytes, half text: ``benchmarks/flist.py``'s
generator), packs it into a ``dir://`` store, serves the blocks with ``zos-upgrade hub serve`` and a
``tar -czf`` of the same tree with ``python -m http.server``, both on loopback in their own
processes, then, interleaved, ``--runs`` times each:

- ``zos-upgrade flist unpack FL DEST --store http://.../blocks`` (the command as an operator runs
  it: a fresh interpreter, no block cache);
- ``curl -s URL | tar -xzf -``, and the same followed by ``sync -f`` (unpack ends with a syncfs:
  the same durability).

Then the Upgrader's first install of the release (``benchmarks/upgrade.py``'s machinery: a real
supervisord node, the hub on loopback, a cold block cache) against ``curl | tar -xzf`` of the same
tree plus restarting the release's two services through the same supervisord.

Prints medians with min-max, the ratio of the medians (ours over the anchor: at most 1.0 is the
target), CPU seconds of client and servers, and the load average before and after.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from flist import cpu_seconds, generate, process_cpu, start_servers, tree_bytes  # noqa: E402

from zos_upgrade.demo.processes import stop_group, wait_for_port, zos_upgrade_cmd  # noqa: E402
from zos_upgrade.flist.pack import pack  # noqa: E402
from zos_upgrade.flist.stores import DirStore  # noqa: E402

MB = 1_000_000


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (ours and our children's) of ``action``, after an untimed sync so no
    step pays for the dirty pages of the one before."""
    os.sync()
    before = cpu_seconds()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, cpu_seconds() - before


def unpack(flist: Path, dest: Path, store_url: str, code: Path | None = None) -> None:
    """``zos-upgrade flist unpack`` in a fresh interpreter; ``code``: another checkout's ``src``."""
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run(zos_upgrade_cmd("flist", "unpack", str(flist), str(dest), "--store", store_url),
                   check=True, stdout=subprocess.DEVNULL, env=env)


def untar_url(url: str, out: Path, then: str) -> None:
    out.mkdir()
    subprocess.run(f"curl -s '{url}' | tar -xzf -{then}", shell=True, check=True, cwd=out)


def row(name: str, values: list[float], anchor: list[float] | None) -> str:
    ratio = "" if anchor is None else f"{statistics.median(values) / statistics.median(anchor):.2f}"
    return f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} | {ratio} |"


def unpack_rows(base: Path, files: int, total: int, runs: int, other: Path | None) -> list[str]:
    src = base / "src"
    generate(src, files, total)
    size = tree_bytes(src)
    flist, blocks = base / "rel.fl", base / "blocks"
    asyncio.run(pack(src, flist, DirStore(blocks)))
    static_dir = base / "static"
    static_dir.mkdir()
    subprocess.run(["tar", "-czf", str(static_dir / "rel.tar.gz"), "-C", str(src), "."], check=True)
    packed = (static_dir / "rel.tar.gz").stat().st_size
    print(f"tree: {files} files, {size / MB:.1f} MB; tarball {packed / MB:.1f} MB", flush=True)
    hub, hub_port, static, static_port = start_servers(base, blocks, static_dir)
    url = f"http://127.0.0.1:{static_port}/rel.tar.gz"
    store = f"http://127.0.0.1:{hub_port}/blocks"
    names: tuple[str, ...] = ("zos-upgrade flist unpack from the hub", "curl | tar -xzf",
                              "curl | tar -xzf + sync -f")
    if other is not None:
        names += (f"the same, code of {other.name}",)
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    try:
        wait_for_port(hub_port, hub)
        wait_for_port(static_port, static)
        for run in range(runs):
            steps: list[tuple[str, subprocess.Popen[bytes], Callable[[], object]]] = [
                (names[0], hub, partial(unpack, flist, base / f"ours{run}", store)),
                (names[1], static, partial(untar_url, url, base / f"curl{run}", "")),
                (names[2], static, partial(untar_url, url, base / f"curl-sync{run}", " && sync -f .")),
            ]
            if other is not None:
                code = other / "src"
                steps.append((names[3], hub, partial(unpack, flist, base / f"other{run}", store, code)))
            for name, server, action in steps:
                before = process_cpu(server.pid)
                wall, cpu = timed(action)
                times[name].append((wall, cpu, process_cpu(server.pid) - before))
            done = ", ".join(f"{n} {times[n][-1][0]:.2f}s" for n in names)
            print(f"unpack run {run + 1}: {done}", flush=True)
    finally:
        stop_group(hub)
        stop_group(static)
    walls = {name: [w for w, _, _ in runs_] for name, runs_ in times.items()}
    lines = ["| what | median s | min-max s | ratio to curl \\| tar (no sync) |", "|---|---:|---:|---:|"]
    for name in names:
        lines.append(row(name, walls[name], walls[names[1]]))
    ours = statistics.median(walls[names[0]])
    synced = statistics.median(walls[names[2]])
    lines.append(f"\nratio unpack / (curl | tar -xzf + sync -f): {ours / synced:.2f}")
    for name in names:
        client = statistics.median(c for _, c, _ in times[name])
        server = statistics.median(s for _, _, s in times[name])
        lines.append(f"CPU {name}: {client:.2f} s client, {server:.2f} s server (medians)")
    return lines


def upgrader_rows(base: Path, files: int, total: int, runs: int) -> list[str]:
    from upgrade import baseline_run, tarball_server  # benchmarks/upgrade.py

    from tests.support.node import Sandbox, install_hub_flist, service_release
    from tests.support.procs import serving
    from tests.support.supervisord import running_supervisord
    from zos_upgrade.supervisor.supervisord import SupervisordClient

    async def install(box: Sandbox, sup: SupervisordClient) -> float:
        async with box.hub_client() as hub:
            upgrader = box.upgrader(sup, probation=0.0)
            started = time.perf_counter()
            await install_hub_flist(upgrader, hub, "tf-zos/zos:1.0.0.fl")
            return time.perf_counter() - started

    installs, baselines = [], []
    with running_supervisord() as sd:
        sup = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)
        hub_box = Sandbox(base / "hub-side")
        gen = base / "gen"
        generate(gen, files - 2, total)
        tree: dict[str, object] = dict(service_release(hub_box.root, "1.0.0"))
        for path in sorted(p for p in gen.rglob("*") if p.is_file()):
            tree[f"data/{path.relative_to(gen)}"] = path.read_bytes()
        hub_box.pack("zos:1.0.0.fl", tree)  # type: ignore[arg-type]
        http_cmd, port = tarball_server(hub_box.src / "tf-zos-zos:1.0.0.fl", base / "upgrader-static")
        with hub_box.serving_hub(), serving(http_cmd, port):
            for run in range(runs):
                shutil.rmtree(hub_box.root)
                node = Sandbox(base / f"node{run}", root=hub_box.root)
                node.hub_root, node.blocks, node.hub_url = hub_box.hub_root, hub_box.blocks, hub_box.hub_url
                os.sync()
                installs.append(asyncio.run(install(node, sup)))
                os.sync()
                baselines.append(asyncio.run(baseline_run(f"http://127.0.0.1:{port}/release.tar.gz",
                                                          base / f"base{run}" / "root", sup)))
                print(f"upgrader run {run + 1}: first install {installs[-1]:.2f}s, "
                      f"baseline {baselines[-1]:.2f}s", flush=True)
    return ["| what | median s | min-max s | ratio to baseline |", "|---|---:|---:|---:|",
            row("baseline: GET tarball + tar -xzf + restart 2 services", baselines, baselines),
            row("Upgrader first install, cold cache", installs, baselines)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 MB / 200 files, a smoke run")
    parser.add_argument("--skip-upgrader", action="store_true", help="only the flist unpack rows")
    parser.add_argument("--other", type=Path, metavar="CHECKOUT",
                        help="also time flist unpack with another checkout's code (e.g. main), interleaved")
    args = parser.parse_args()
    total, files = (20 * MB, 200) if args.quick else (110 * MB, 1002)
    load_before = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="zu-bench-first-install-"))
    try:
        lines = unpack_rows(base / "unpack", files, total, args.runs, args.other)
        if not args.skip_upgrader:
            lines += ["", *upgrader_rows(base / "upgrader", files, total, args.runs)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"\nmachine: nproc={os.cpu_count()} {platform.processor() or platform.machine()} "
          f"python={platform.python_version()}; runs={args.runs}; load average before "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
