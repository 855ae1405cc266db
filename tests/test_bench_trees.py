"""The version chain of ``benchmarks/compare.py``: each version differs from the one before by exactly
its kind of change, with the modification times rsync's quick check relies on, the same every time."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from benchmarks._support.trees import BIG, Scale, build_chain
from tests.support.node import tree_digest

TINY = Scale(data_files=30, data_bytes=600_000, big_bytes=200_000, replaced=3, edits=10, inserted=5_000,
             insert_at=1_000)


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def changed(old: Path, new: Path) -> set[str]:
    a, b = files(old), files(new)
    assert set(a) == set(b)  # no side adds or removes a file
    return {k for k in a if a[k].read_bytes() != b[k].read_bytes()}


def test_each_version_holds_exactly_its_change(tmp_path: Path) -> None:
    chain = build_chain(tmp_path / "trees", tmp_path / "node", TINY)
    assert [v.version for v in chain] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    first = files(chain[0].path)
    assert len(first) == TINY.data_files + 5
    assert (chain[0].path / BIG).stat().st_size == TINY.big_bytes
    assert "/node/opt/app/service.py" in (chain[0].path / "etc/zinit/alpha.yaml").read_text()

    replaced = changed(chain[0].path, chain[1].path)
    assert "opt/app/VERSION" in replaced and len(replaced - {"opt/app/VERSION"}) == TINY.replaced
    for rel in replaced:
        assert (chain[1].path / rel).stat().st_size == (chain[0].path / rel).stat().st_size

    edited = changed(chain[1].path, chain[2].path) - {"opt/app/VERSION"}
    assert 1 <= len(edited) <= TINY.edits and BIG not in edited
    differing = 0
    for rel in edited:
        old, new = (chain[1].path / rel).read_bytes(), (chain[2].path / rel).read_bytes()
        assert len(old) == len(new)
        differing += sum(x != y for x, y in zip(old, new, strict=True))
    assert 0 < differing <= TINY.edits * 4096

    assert changed(chain[2].path, chain[3].path) == {BIG, "opt/app/VERSION"}
    old, new = (chain[2].path / BIG).read_bytes(), (chain[3].path / BIG).read_bytes()
    assert len(new) == len(old) + TINY.inserted
    assert new[:TINY.insert_at] == old[:TINY.insert_at]
    assert new[TINY.insert_at + TINY.inserted:] == old[TINY.insert_at:]
    assert (chain[3].path / "opt/app/VERSION").read_text() == "1.3.0\n"

    # rsync's quick check: a changed file has a newer time, an unchanged one the same time
    for before, after in pairwise(chain):
        diff = changed(before.path, after.path)
        for rel, path in files(after.path).items():
            same_time = path.stat().st_mtime == (before.path / rel).stat().st_mtime
            assert same_time == (rel not in diff), (after.version, rel)


def test_the_chain_is_the_same_every_time(tmp_path: Path) -> None:
    one = build_chain(tmp_path / "a", tmp_path / "node", TINY)
    two = build_chain(tmp_path / "b", tmp_path / "node", TINY)
    for x, y in zip(one, two, strict=True):
        assert tree_digest(x.path) == tree_digest(y.path)
