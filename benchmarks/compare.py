"""Side by side with what our users would otherwise use: OSTree, casync, rsync and ``curl | tar``.

One deterministic tree (``_support/trees.py``: 1,002 files, 110 MB, half random and half text, one
20 MB file) and a chain of three changes: 1 % of the files replaced, 200 scattered 4 KiB edits,
1 MB inserted near the start of the 20 MB file. Every side does a cold first install of 1.0.0 on
an empty node and then the three upgrades, each onto the tree the previous step left:

* ours: the real Upgrader (a fresh sandbox node, a real supervisord, probation 0) over HTTP from
  ``zos-upgrade hub serve``, the releases packed with ``zos-upgrade flist pack``; with each
  chunking mode the CLI offers (``--chunking cdc`` where present: then both are printed);
* OSTree: archive repo, ``ostree pull`` + ``ostree checkout``; casync: ``casync extract``
  (``--seed=`` the old tree); rsync: ``rsync -a --delete`` from a daemon onto a copy of the old
  tree; ``curl | tar -xzf -``: the first install only. Their servers are ``python -m http.server``
  and ``rsync --daemon``.

Every client talks to its server through one counting TCP proxy (``_support/proxy.py``, its own
process), which gives the bytes on the wire each way. Each side's result is checked against the
published tree in the first run. Runs are interleaved (the order turns each run) so load hits every
side alike; the figures are medians of ``--runs``. An untimed ``sync`` precedes every timed step.
Then the idle daemon's memory (``daemon_idle.py``) and the pack into a real 0-db
(``pack_zdb.py``, needs ``make tools``) complete the issue's table. Load average before and after.

    .venv/bin/python benchmarks/compare.py [--quick] [--runs N] [--json OUT] [--no-extras]

``--quick``: an 11 MB / 102-file tree (one file replaced, 20 edits, 100 KB inserted), one run, and
the extras' short modes: a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _support.anchors import ANCHORS, Anchor, CurlTar, Rsync, ensure_tools  # noqa: E402
from _support.ours import (  # noqa: E402
    chunking_modes,
    fresh_node,
    hand_over,
    install_chain,
    publish,
    service_start_seconds,
)
from _support.proxy import Counts, ProxyProcess  # noqa: E402
from _support.trees import FULL, QUICK, Version, build_chain  # noqa: E402

from tests.support.node import Sandbox, tree_digest  # noqa: E402
from tests.support.procs import free_port, serving  # noqa: E402
from tests.support.supervisord import running_supervisord  # noqa: E402
from zos_upgrade.supervisor.supervisord import SupervisordClient  # noqa: E402

REPOS = {"fixed": "tf-zos", "cdc": "tf-zos-cdc"}


@dataclass
class Sample:
    seconds: float
    wire: Counts
    extra: dict[str, int] = field(default_factory=dict)


# side -> version -> one sample per run
Results = dict[str, dict[str, list[Sample]]]


def files_of(root: Path) -> dict[str, str]:
    """The files and links of a tree with their modes and contents (directories apart: a checkout
    may give them other modes or times, which no side is asked to keep)."""
    return {k: v for k, v in tree_digest(root).items() if not v.startswith("dir:")}


def check_tree(side: str, got: Path, version: Version) -> None:
    want, have = files_of(version.path), files_of(got)
    if want != have:
        wrong = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise RuntimeError(f"{side}: the tree of {version.version} differs in {len(wrong)} paths: "
                           f"{wrong[:5]}")


def ours_chain(mode: str, hub_box: Sandbox, url: str, sup: SupervisordClient, work: Path,
               proxy: ProxyProcess, chain: list[Version], check: bool) -> dict[str, Sample]:
    node = fresh_node(hub_box, work, url)
    marks: list[Counts] = []

    def between(index: int) -> None:  # untimed: the proxy's counts, the check, sync
        if check and index > 0:
            check_tree(f"ours ({mode})", node.root, chain[index - 1])
        os.sync()
        marks.append(proxy.counts()["hub"])

    fqdns = [f"{REPOS[mode]}/zos:{v.version}.fl" for v in chain]
    timings = asyncio.run(install_chain(node, sup, fqdns, between))
    out = {}
    for index, (version, (seconds, report)) in enumerate(zip(chain, timings, strict=True)):
        out[version.version] = Sample(seconds, marks[index + 1].minus(marks[index]),
                                      {"bytes_downloaded": report.bytes_downloaded})
    shutil.rmtree(work, ignore_errors=True)
    return out


def anchor_chain(anchor: Anchor, url: str, work: Path, proxy: ProxyProcess, chain: list[Version],
                 check: bool) -> dict[str, Sample]:
    node = anchor.node(work, url)
    out: dict[str, Sample] = {}
    previous: Path | None = None
    for version in chain if anchor.upgrades else chain[:1]:
        step = node.step(version, previous)
        if step.prepare is not None:
            step.prepare()
        os.sync()
        with proxy.measure(anchor.route) as wire:
            started = time.perf_counter()
            step.timed()
            seconds = time.perf_counter() - started
        if check:
            check_tree(anchor.name, step.result, version)
        out[version.version] = Sample(seconds, wire)
        previous = step.result
    shutil.rmtree(work, ignore_errors=True)
    return out


def measure(work: Path, chain: list[Version], hub_box: Sandbox, modes: list[str], runs: int) -> Results:
    srv = work / "srv"
    srv.mkdir()
    anchors = [cls() for cls in ANCHORS]
    for anchor in anchors:
        started = time.perf_counter()
        anchor.publish(chain, srv)
        print(f"published {anchor.name} in {time.perf_counter() - started:.1f}s", flush=True)
    rsync = next(a for a in anchors if isinstance(a, Rsync))
    static_port, rsync_port = free_port(), free_port()
    static = [sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
              "--directory", str(srv)]
    results: Results = {}
    with running_supervisord() as sd, hub_box.serving_hub() as hub_url, serving(static, static_port), \
            serving(rsync.daemon(rsync_port), rsync_port), \
            ProxyProcess({"hub": int(hub_url.rsplit(":", 1)[1]), "static": static_port,
                          "rsync": rsync_port}) as proxy:
        sup = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)
        urls = {"hub": f"http://127.0.0.1:{proxy.ports['hub']}",
                "static": f"http://127.0.0.1:{proxy.ports['static']}",
                "rsync": f"rsync://127.0.0.1:{proxy.ports['rsync']}"}
        sides: list[tuple[str, Callable[[int], dict[str, Sample]]]] = []
        for mode in modes:
            sides.append((f"ours ({mode})", lambda run, mode=mode: ours_chain(  # type: ignore[misc]
                mode, hub_box, urls["hub"], sup, work / f"ours-{mode}-{run}", proxy, chain, run == 0)))
        for anchor in anchors:
            sides.append((anchor.name, lambda run, anchor=anchor: anchor_chain(  # type: ignore[misc]
                anchor, urls[anchor.route], work / f"{anchor.name.split()[0]}-{run}", proxy, chain,
                run == 0)))
        for run in range(runs):
            for name, chain_of in sides[run % len(sides):] + sides[:run % len(sides)]:
                got = chain_of(run)
                for version, sample in got.items():
                    results.setdefault(name, {}).setdefault(version, []).append(sample)
                print(f"run {run + 1} {name:<14} " + "  ".join(
                    f"{v} {s.seconds:.2f}s {s.wire.total / 1e6:.3f}MB" for v, s in got.items()), flush=True)
        # issue 19's baseline for the Upgrader's first install: `curl | tar` plus starting the services
        starts = [asyncio.run(service_start_seconds(sup, chain[0].path)) for _ in range(runs)]
    print("service start (the release's two services through supervisord): "
          + " ".join(f"{s:.3f}s" for s in starts), flush=True)
    first = chain[0].version
    results[f"{CurlTar.name} + service start"] = {first: [
        Sample(sample.seconds + start, sample.wire) for sample, start in
        zip(results[CurlTar.name][first], starts, strict=True)]}
    return results


def extras(quick: bool) -> dict[str, list[str]]:
    """The issue's last two rows, by their own benchmarks (their summary lines)."""
    here = REPO / "benchmarks"
    scripts = {
        "daemon_idle": ([here / "daemon_idle.py", *(["--runs", "1", "--settle", "2", "--samples", "3"]
                                                   if quick else [])],
                        ("bare interpreter", "interpreter + daemon", "idle daemon")),
        "pack_zdb": ([here / "pack_zdb.py", *(["--quick"] if quick else [])],
                     ("tree:", "ours-zdb ", "zflist-zdb ", "ours-dir ", "time ratio")),
    }
    out: dict[str, list[str]] = {}
    for name, (cmd, keep) in scripts.items():
        print(f"\n--- {name}: {' '.join(str(c) for c in cmd[1:]) or 'defaults'}", flush=True)
        done = subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, capture_output=True, text=True,
                              check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith(keep)]
        if done.returncode != 0:
            lines.append(f"not measured: exit {done.returncode}: {done.stderr.strip()[-300:]}")
        out[name] = lines
        print("\n".join(lines), flush=True)
    return out


def median_sample(samples: list[Sample]) -> tuple[float, int]:
    return (statistics.median(s.seconds for s in samples),
            int(statistics.median(s.wire.total for s in samples)))


def table(results: Results, chain: list[Version], modes: list[str]) -> list[str]:
    ours = [f"ours ({mode})" for mode in modes]
    lines = ["| work | side | time s, median (min-max) | bytes on the wire, median (down / up) | "
             + " | ".join(f"{o}: time ratio / bytes ratio" for o in ours) + " |",
             "|---|---|---:|---:|" + "---:|" * len(ours)]
    for version in chain:
        work = "first install, cold (1.0.0)" if not version.change else f"upgrade to {version.version}: " \
                                                                        f"{version.change}"
        for side, per_version in results.items():
            samples = per_version.get(version.version)
            if not samples:
                continue
            seconds, wire = median_sample(samples)
            times = [s.seconds for s in samples]
            down = int(statistics.median(s.wire.down for s in samples))
            up = int(statistics.median(s.wire.up for s in samples))
            ratios = []
            for o in ours:
                mine = median_sample(results[o][version.version])
                ratios.append("" if side in ours else f"{mine[0] / seconds:.2f} / {mine[1] / wire:.2f}")
            cell = side.replace("|", "\\|")  # markdown: a pipe in a cell is escaped
            lines.append(f"| {work} | {cell} | {seconds:.2f} ({min(times):.2f}-{max(times):.2f}) | "
                         f"{wire:,} ({down:,} / {up:,}) | " + " | ".join(ratios) + " |")
    return lines


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), "?")
    return f"nproc={os.cpu_count()} model={model} python={platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small tree, for a smoke run")
    parser.add_argument("--runs", type=int, help="runs per side (default 3; 1 with --quick)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--no-extras", action="store_true", help="skip daemon_idle.py and pack_zdb.py")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    scale = QUICK if args.quick else FULL
    ensure_tools()
    load_before = os.getloadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="zu-bench-compare-"))
    try:
        hub_box = Sandbox(work / "hub-side")
        chain = build_chain(work / "trees", hub_box.root, scale)
        modes = chunking_modes()
        for mode in modes:
            packed = sum(publish(v.path, hub_box, REPOS[mode], f"zos:{v.version}.fl", mode) for v in chain)
            print(f"published ours ({mode}): {len(chain)} releases packed in {packed:.1f}s", flush=True)
        hand_over(hub_box)
        results = measure(work, chain, hub_box, modes, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_mid = os.getloadavg()
    more = {} if args.no_extras else extras(args.quick)
    load_after = os.getloadavg()
    rows = table(results, chain, modes)
    print(f"\nmachine: {machine()}")
    print(f"tree: {scale.describe()}; runs: {args.runs} (medians); "
          f"chunking modes of ours: {', '.join(modes)}")
    print(f"load average (1, 5, 15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; after the "
          f"sides: {' '.join(f'{x:.2f}' for x in load_mid)}; after the extras: "
          f"{' '.join(f'{x:.2f}' for x in load_after)}; {time.monotonic() - started:.0f}s in all")
    print("ratios are ours / that side (below 1: ours is faster or sends less)\n")
    print("\n".join(rows))
    for name, lines in more.items():
        print(f"\n{name}:\n" + "\n".join(lines))
    if args.json:
        doc = {
            "command": sys.argv, "machine": machine(), "tree": scale.describe(), "runs": args.runs,
            "chunking_modes": modes,
            "load_average": {"before": load_before, "after_sides": load_mid, "after_extras": load_after},
            "rows": [{"version": v.version, "change": v.change, "side": side,
                      "seconds": [s.seconds for s in per[v.version]],
                      "wire_down": [s.wire.down for s in per[v.version]],
                      "wire_up": [s.wire.up for s in per[v.version]],
                      "extra": [s.extra for s in per[v.version]]}
                     for v in chain for side, per in results.items() if v.version in per],
            "extras": more,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
