"""Server CPU per block: `zos-upgrade hub serve` vs `python -m http.server` over the same block files.

Both servers serve one folder of N block files (``<xx>/<hex>``, random bytes), our hub as its
``--blocks`` folder (``GET /blocks/<xx>/<hex>``), http.server as its ``--directory``
(``GET /<xx>/<hex>``). A client in this process fetches every block once over one keep-alive
connection (http.server runs ``--protocol HTTP/1.1`` so that it keeps connections too: its default,
HTTP/1.0, would make it pay a connect and a thread per block). The figure is the server process's
CPU time (utime + stime from ``/proc/<pid>/stat``) from just before the first request to just after
the last body was read, divided by N; each figure is the median of ``--runs`` runs, the two servers
interleaved in one run; ratio = ours / http.server's.

    .venv/bin/python benchmarks/hub_blocks.py [--blocks 2000] [--runs 3] [--sizes 524288,4096]
        [--before SRC]

``--before SRC`` also measures the hub of another source tree (``SRC/src`` first on the server's
``PYTHONPATH``, e.g. a checkout of the commit before a change) in the same run, interleaved.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.procs import free_port, stop_process, wait_for_port, zos_upgrade_cmd  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def make_blocks(folder: Path, count: int, size: int) -> list[str]:
    names = []
    for _ in range(count):
        hexid = secrets.token_hex(32)
        (folder / hexid[:2]).mkdir(exist_ok=True)
        (folder / hexid[:2] / hexid).write_bytes(os.urandom(size))
        names.append(f"{hexid[:2]}/{hexid}")
    return names


@contextmanager
def server(cmd: list[str], port: int, src: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src / "src")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        stop_process(proc)


def fetch_all(port: int, prefix: str, names: list[str], size: int, pid: int) -> float:
    """Server CPU seconds per block while one keep-alive connection GETs every block."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", prefix + names[0])  # warm: the connection and the first-request imports
    conn.getresponse().read()
    before = cpu_seconds(pid)
    for name in names:
        conn.request("GET", prefix + name)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or len(body) != size:
            raise RuntimeError(f"{prefix}{name}: {response.status}, {len(body)} bytes")
    after = cpu_seconds(pid)
    conn.close()
    return (after - before) / len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="524288,4096")
    parser.add_argument("--before", type=Path, help="another source tree whose hub is measured too")
    parser.add_argument("--before-label", default="before", help="its name in the output")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"command: .venv/bin/python benchmarks/hub_blocks.py --blocks {args.blocks} --runs {args.runs} "
          f"--sizes {args.sizes}" + (" --before SRC" if args.before else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / f"blocks-{size}"
            folder.mkdir()
            names = make_blocks(folder, args.blocks, size)
            ports = {"ours": free_port(), "http.server": free_port(), "before": free_port()}
            cmds = {
                "ours": zos_upgrade_cmd("hub", "serve", "--root", str(Path(tmp) / f"root-{size}"),
                                        "--blocks", str(folder), "--port", str(ports["ours"])),
                "http.server": [sys.executable, "-m", "http.server", str(ports["http.server"]), "--bind",
                                "127.0.0.1", "--directory", str(folder), "--protocol", "HTTP/1.1"],
            }
            cmds["before"] = [*cmds["ours"][:-1], str(ports["before"])]
            prefixes = {"ours": "/blocks/", "http.server": "/", "before": "/blocks/"}
            srcs = {"before": args.before}
            kinds = ["ours", "http.server"] + (["before"] if args.before else [])
            figures: dict[str, list[float]] = {kind: [] for kind in kinds}
            with ExitStack() as stack:
                procs = {kind: stack.enter_context(server(cmds[kind], ports[kind], srcs.get(kind)))
                         for kind in kinds}
                for _ in range(args.runs):
                    for kind in kinds:
                        cpu = fetch_all(ports[kind], prefixes[kind], names, size, procs[kind].pid)
                        figures[kind].append(cpu)
            medians = {kind: statistics.median(values) for kind, values in figures.items()}
            for kind in kinds:
                runs = ", ".join(f"{v * 1e6:.0f}" for v in figures[kind])
                label = args.before_label if kind == "before" else kind
                print(f"{size:>7} B blocks x {args.blocks}: {label:11} {medians[kind] * 1e6:6.0f} us/block "
                      f"(runs {runs}), ratio to http.server {medians[kind] / medians['http.server']:.2f}x")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
