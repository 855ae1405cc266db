"""How often our snappy encoder (cramjam) writes other bytes than zflist's and rfs's for the same
block, over a real tree: a differing compressed block gets another block id, so the same content
is stored twice and dedupe with blocks the other tool made is lost. The key (hash of the plain
block) always agrees; only the id (hash of the stored bytes) can differ.

Encoders compared, each on the same 512 KiB chunks (the v1 and v2 block size):
- ``cramjam``: what zos-upgrade uses (``cramjam.snappy.compress_raw``);
- ``libsnappy``: Google's C++ snappy through its C API, the library ``zflist`` links (loaded with
  ctypes from the system, Debian's libsnappy1v5);
- ``pysnappy``: a Cython binding with its own copy of Google's snappy (PyPI), when importable;
- ``snap``: the Rust crate rfs uses (``snap::raw::Encoder``), through a small helper built with
  cargo from Debian's ``librust-snap-dev``, when ``--snap-helper`` names it.

    .venv/bin/python benchmarks/snappy_ids.py [TREE ...] [--snap-helper BIN]

(BENCHMARKS.md, "Snappy encoders and block ids", has the commands that install pysnappy and build
the helper.) With no TREE: this interpreter's standard library and /usr/bin.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cramjam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.libsnappy import libsnappy_compress

CHUNK = 512 * 1024
Encoder = Callable[[bytes], bytes]


def _pysnappy() -> Encoder | None:
    try:
        import pysnappy  # type: ignore[import-not-found]
    except ImportError:
        return None
    return lambda data: bytes(pysnappy.compress(data))


class _SnapHelper:
    """The Rust helper: length-prefixed chunks in on stdin, length-prefixed compressed out."""

    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __call__(self, data: bytes) -> bytes:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(struct.pack("<I", len(data)) + data)
        self.proc.stdin.flush()
        (size,) = struct.unpack("<I", self.proc.stdout.read(4))
        return self.proc.stdout.read(size)


def chunks(trees: list[Path]) -> Iterator[bytes]:
    for tree in trees:
        for folder, _dirs, files in os.walk(tree):
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                for offset in range(0, len(data), CHUNK):
                    yield data[offset: offset + CHUNK]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="*", type=Path,
                        default=[Path(os.__file__).parent, Path("/usr/bin")])
    parser.add_argument("--snap-helper")
    args = parser.parse_args()
    encoders: dict[str, Encoder] = {}
    for name, found in (("libsnappy", libsnappy_compress()), ("pysnappy", _pysnappy())):
        if found is None:
            print(f"{name}: not available, skipped")
        else:
            encoders[name] = found
    if args.snap_helper:
        encoders["snap"] = _SnapHelper(args.snap_helper)
    total = 0
    differ = dict.fromkeys(encoders, 0)
    pairs: dict[str, int] = {}
    size_delta = dict.fromkeys(encoders, 0)
    for chunk in chunks(args.trees):
        total += 1
        ours = bytes(cramjam.snappy.compress_raw(chunk))
        outs = {name: enc(chunk) for name, enc in encoders.items()}
        for name, out in outs.items():
            assert bytes(cramjam.snappy.decompress_raw(out)) == chunk, name  # all are valid snappy
            if out != ours:
                differ[name] += 1
                size_delta[name] += len(out) - len(ours)
        names = sorted(outs)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pairs.setdefault(f"{a} vs {b}", 0)
                pairs[f"{a} vs {b}"] += outs[a] != outs[b]
    print(f"trees: {' '.join(map(str, args.trees))}; {total} blocks of up to {CHUNK} bytes")
    for name in encoders:
        share = 100 * differ[name] / max(total, 1)
        print(f"cramjam vs {name}: {differ[name]} of {total} blocks differ ({share:.2f} %), "
              f"{name} output {size_delta[name]:+d} bytes in total")
    for pair, count in pairs.items():
        print(f"{pair}: {count} of {total} blocks differ ({100 * count / max(total, 1):.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
