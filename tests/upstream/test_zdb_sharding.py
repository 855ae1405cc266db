"""Sharding and replicas over three real 0-db processes: a route table (v2 `route` table, v1
router.yaml) splits blocks by the first byte of their id; each half lives on two of the three zdb,
so every block is still readable while any one of them is down."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.support.procs import zos_upgrade_cmd
from tests.support.upstream import ZdbServer
from tests.upstream.trees import describe_tree, make_mixed_tree
from zos_upgrade.flist import EntryKind, open_flist


def cli(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(zos_upgrade_cmd("flist", *map(str, args)), capture_output=True, text=True,
                          timeout=300, check=False)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def routes(a: ZdbServer, b: ZdbServer, c: ZdbServer) -> list[str]:
    # lower half on a then b, upper half on c then b: b holds everything, a and c one half each
    return [f"00-7f={a.url()}", f"00-7f={b.url()}", f"80-ff={c.url()}", f"80-ff={b.url()}"]


def block_ids(flist: Path) -> list[bytes]:
    with open_flist(flist) as reader:
        return sorted({ref.id for e in reader.entries() if e.kind is EntryKind.FILE for ref in e.blocks})


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_blocks_sharded_and_replicated_over_three_zdb(
    tmp_path: Path, three_zdbs: list[ZdbServer], suffix: str
) -> None:
    a, b, c = three_zdbs
    src = make_mixed_tree(tmp_path / "src")
    for i in range(40):  # enough distinct blocks for both halves of the id space
        (src / f"small-{i}").write_bytes(f"file number {i}\n".encode() * (i + 1))
    out = tmp_path / f"release{suffix}"
    specs = routes(a, b, c)
    cli("pack", src, "-o", out, *[arg for spec in specs for arg in ("--store", spec)])

    ids = block_ids(out)
    low, high = [i for i in ids if i[0] <= 0x7F], [i for i in ids if i[0] > 0x7F]
    assert low and high
    held = {name: {i for i in ids if z.command("EXISTS", i)}
            for name, z in zip("abc", three_zdbs, strict=True)}
    assert held == {"a": set(low), "b": set(ids), "c": set(high)}

    with open_flist(out) as reader:  # the route table travels in the flist
        assert [(r.start, r.end, r.url) for r in reader.routes()] == [
            (0, 0x7F, a.url()), (0, 0x7F, b.url()), (0x80, 0xFF, c.url()), (0x80, 0xFF, b.url())]

    want = describe_tree(src)
    want.pop("/")

    def unpacked(name: str) -> dict[str, tuple[object, ...]]:
        dest = tmp_path / name
        cli("unpack", out, dest)  # no --store: the flist's own routes
        got = describe_tree(dest)
        got.pop("/")
        return got

    assert unpacked("all-up") == want
    a.stop()  # the first store of the lower half is down: its replica b answers
    started = time.monotonic()
    assert unpacked("a-down") == want
    assert "all" in cli("verify", out).stdout
    elapsed = time.monotonic() - started
    print(f"{len(low)} blocks read around the down replica (unpack + verify) in {elapsed:.1f}s")
    assert elapsed < 60, f"reading around a down replica took {elapsed:.1f}s"
    b.stop()  # now the lower half has no replica left: a clear failure naming both stores
    failed = cli("verify", out, ok=False)
    assert f"127.0.0.1:{a.port}" in failed.stdout + failed.stderr
    assert f"127.0.0.1:{b.port}" in failed.stdout + failed.stderr
