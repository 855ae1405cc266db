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
from contextlib import contextmanager
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
def server(cmd: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
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
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"command: .venv/bin/python benchmarks/hub_blocks.py --blocks {args.blocks} --runs {args.runs} "
          f"--sizes {args.sizes}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / f"blocks-{size}"
            folder.mkdir()
            names = make_blocks(folder, args.blocks, size)
            ours_port, base_port = free_port(), free_port()
            ours_cmd = zos_upgrade_cmd("hub", "serve", "--root", str(Path(tmp) / f"root-{size}"),
                                       "--blocks", str(folder), "--port", str(ours_port))
            base_cmd = [sys.executable, "-m", "http.server", str(base_port), "--bind", "127.0.0.1",
                        "--directory", str(folder), "--protocol", "HTTP/1.1"]
            ours: list[float] = []
            base: list[float] = []
            with server(ours_cmd, ours_port) as ours_proc, server(base_cmd, base_port) as base_proc:
                for _ in range(args.runs):
                    ours.append(fetch_all(ours_port, "/blocks/", names, size, ours_proc.pid))
                    base.append(fetch_all(base_port, "/", names, size, base_proc.pid))
            mo, mb = statistics.median(ours), statistics.median(base)
            print(f"{size:>7} B blocks x {args.blocks}: ours {mo * 1e6:7.1f} us/block "
                  f"(runs {', '.join(f'{v * 1e6:.1f}' for v in ours)}), http.server {mb * 1e6:7.1f} us/block "
                  f"(runs {', '.join(f'{v * 1e6:.1f}' for v in base)}), ratio {mo / mb:.2f}x")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
