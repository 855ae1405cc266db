"""The release trees of the side-by-side benchmark: one deterministic base and three change kinds.

The base is the issue's tree: data files of mixed sizes, half random bytes and half text (the
generators of ``benchmarks/flist.py``), one large random file for the in-file rows, and a release's
service files (VERSION, the service script, two service configs). Each version is a directory of its
own, made from the one before by one kind of change, so every side upgrades the same chain
``1.0.0 -> 1.1.0 -> 1.2.0 -> 1.3.0``:

* 1.1.0: a number of whole files replaced (new bytes, same sizes): 1 % of the files;
* 1.2.0: scattered 4 KiB edits in place, across the data files;
* 1.3.0: bytes inserted near the start of the large file (everything after them shifts).

Every file of a version has a fixed modification time (the changed ones a later one), so rsync's
quick check sees exactly the changed files, the same way in every run.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.flist import content, file_sizes
from tests.support.node import service_release, write_tree

MB = 1_000_000
BASE_MTIME = 1_700_000_000
BIG = "data/big/image.bin"


@dataclass(frozen=True)
class Scale:
    """How big the tree and its changes are (the full run is the issue's; ``quick`` a smoke run)."""

    data_files: int
    data_bytes: int
    big_bytes: int
    replaced: int
    edits: int
    inserted: int
    insert_at: int = 100_000

    def describe(self) -> str:
        return (f"{self.data_files + 5} files, {(self.data_bytes + self.big_bytes) / MB:.0f} MB "
                f"({self.data_files} data files half random half text, one {self.big_bytes / MB:.0f} MB "
                f"random file, 4 service files)")


FULL = Scale(data_files=997, data_bytes=90 * MB, big_bytes=20 * MB, replaced=10, edits=200,
             inserted=1 * MB)
QUICK = Scale(data_files=97, data_bytes=9 * MB, big_bytes=2 * MB, replaced=1, edits=20,
              inserted=100_000)


@dataclass(frozen=True)
class Version:
    version: str
    path: Path
    change: str  # what makes it differ from the version before ("" for the first)


def data_paths(tree: Path) -> list[Path]:
    return sorted(p for p in (tree / "data").rglob("*") if p.is_file() and p.name != Path(BIG).name)


def build_chain(base: Path, node_root: Path, scale: Scale, seed: int = 19) -> list[Version]:
    """Write the four versions under ``base`` (``base/1.0.0`` ...); their service files name
    ``node_root``, where the Upgrader installs them."""
    rng = random.Random(seed)
    first = base / "1.0.0"
    write_tree(first, service_release(node_root, "1.0.0"))
    for index, size in enumerate(file_sizes(rng, scale.data_files, scale.data_bytes)):
        path = first / "data" / f"d{index % 20:02d}" / f"f{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content(rng, size))
    (first / BIG).parent.mkdir(parents=True)
    (first / BIG).write_bytes(rng.randbytes(scale.big_bytes))
    _stamp(first, list(first.rglob("*")), 0)
    chain = [Version("1.0.0", first, "")]
    changes: list[tuple[str, str, Callable[[Path, random.Random, Scale], list[Path]]]] = [
        ("1.1.0", f"{scale.replaced} of {scale.data_files + 5} files replaced", _replace_files),
        ("1.2.0", f"{scale.edits} scattered 4 KiB edits", _scattered_edits),
        ("1.3.0", f"{scale.inserted / MB:g} MB inserted near the start of the "
                  f"{scale.big_bytes / MB:g} MB file", _insert),
    ]
    for step, (version, label, change) in enumerate(changes, start=1):
        tree = base / version
        shutil.copytree(chain[-1].path, tree, symlinks=True)  # copy2: the times stay
        changed = change(tree, rng, scale)
        changed += _service_files(tree, version)
        _stamp(tree, changed, step)
        chain.append(Version(version, tree, label))
    return chain


def _stamp(tree: Path, paths: list[Path], step: int) -> None:
    when = BASE_MTIME + step * 86_400
    for path in paths:
        os.utime(path, (when, when), follow_symlinks=False)
    os.utime(tree, (when, when))


def _service_files(tree: Path, version: str) -> list[Path]:
    # of the release's service files only VERSION names the version (service_release)
    path = tree / "opt/app/VERSION"
    path.write_text(f"{version}\n")
    return [path]


def _replace_files(tree: Path, rng: random.Random, scale: Scale) -> list[Path]:
    picked = rng.sample(data_paths(tree), scale.replaced)
    for path in picked:
        path.write_bytes(rng.randbytes(path.stat().st_size))
    return picked


def _scattered_edits(tree: Path, rng: random.Random, scale: Scale) -> list[Path]:
    candidates = [p for p in data_paths(tree) if p.stat().st_size > 8192]
    touched: set[Path] = set()
    for _ in range(scale.edits):
        path = rng.choice(candidates)
        offset = rng.randrange(0, path.stat().st_size - 4096)
        with path.open("r+b") as handle:
            handle.seek(offset)
            handle.write(rng.randbytes(4096))
        touched.add(path)
    return sorted(touched)


def _insert(tree: Path, rng: random.Random, scale: Scale) -> list[Path]:
    path = tree / BIG
    data = path.read_bytes()
    path.write_bytes(data[:scale.insert_at] + rng.randbytes(scale.inserted) + data[scale.insert_at:])
    return [path]
