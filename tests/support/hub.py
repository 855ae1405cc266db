"""Hub fixtures shared by the client tests (tests/hub) and the server tests (tests/hubserver): the
recorded hub's answers and storage layout, and real hub servers on free loopback ports.

Each of those packages' conftest.py re-exports the ``start_hub`` and ``golden_root`` fixtures.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import free_port, serving, zos_upgrade_cmd

RECORDED = Path(__file__).resolve().parents[1] / "data" / "hub-responses"
GOLDEN_FLISTS = RECORDED / "flists"

TOKEN_A = "token-of-repo-alpha-0123456789"
TOKEN_B = "token-of-repo-beta-9876543210"
NODE_SECRET = "node-secret-for-the-tests-0123"  # the hub's [rollout] node_secret in the tests


def rollout_config(threshold: float = 10.0, min_reports: int = 5, max_nodes: int = 1000,
                   repo: str = "golden") -> str:
    """A hub config whose TOKEN_A writes ``repo`` and which accepts node reports (NODE_SECRET)."""
    return (f'[tokens]\n"{TOKEN_A}" = "{repo}"\n"{TOKEN_B}" = "beta"\n'
            f'[rollout]\nnode_secret = "{NODE_SECRET}"\nthreshold_percent = {threshold}\n'
            f"min_reports = {min_reports}\nmax_nodes = {max_nodes}\n")

# what the real 0-hub answered, per request path: (recorded file, status, content type)
RECORDED_ROUTES = {
    "/api/repositories": ("repositories.json", 200, "application/json"),
    "/api/flist": ("flist.json", 200, "application/json"),
    "/api/fileslist": ("fileslist.json", 200, "application/json"),
    "/api/flist/golden": ("flist-golden.json", 200, "application/json"),
    "/api/flist/golden/v1.flist/light": ("flist-golden-v1.flist-light.json", 200, "application/json"),
    "/api/flist/golden/v2.flist/light": ("flist-golden-v2.flist-light.json", 200, "application/json"),
    "/api/flist/golden/app:latest.flist/light": (
        "flist-golden-app_latest.flist-light.json",
        200,
        "application/json",
    ),
    "/api/flist/golden/v2/light": ("flist-golden-v2-noext-light.json", 200, "application/json"),
    "/api/flist/golden/v1.flist": ("flist-golden-v1.flist.json", 200, "application/json"),
    "/api/flist/golden/v2.flist": ("flist-golden-v2.flist.json", 200, "application/json"),
    "/api/flist/golden/app:latest.flist": ("flist-golden-app_latest.flist.json", 200, "application/json"),
    "/api/flist/golden/missing.flist/light": (
        "flist-golden-missing.flist-light.json",
        404,
        "application/json",
    ),
    "/api/flist/nouser": ("flist-nouser.html", 404, "text/html; charset=utf-8"),
    "/api/flist/nouser/v1.flist/light": ("flist-nouser-v1.flist-light.json", 404, "application/json"),
}


def make_golden_layout(root: Path) -> Path:
    """The storage the recorded hub served (see tests/data/hub-responses/NOTE.md)."""
    golden = root / "golden"
    golden.mkdir(parents=True)
    for name in ("v1.flist", "v2.flist"):
        shutil.copyfile(GOLDEN_FLISTS / name, golden / name)
    os.symlink("v2.flist", golden / "app:latest.flist")
    os.utime(golden / "v1.flist", (1700000100, 1700000100))
    os.utime(golden / "v2.flist", (1700000200, 1700000200))
    os.utime(golden / "app:latest.flist", (1700000300, 1700000300), follow_symlinks=False)
    os.utime(golden, (1700000400, 1700000400))
    return root


@dataclass
class Hub:
    url: str
    root: Path
    blocks: Path | None


HubFactory = Callable[..., AbstractContextManager[Hub]]


@contextmanager
def hub_process(
    root: Path, workdir: Path, *, blocks: bool = False, config: str | None = None
) -> Iterator[Hub]:
    """Run ``zos-upgrade hub serve`` over ``root`` as a child process on a free port."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["hub", "serve", "--root", str(root), "--port", str(port)]
    block_dir = None
    if blocks:
        block_dir = workdir / "blocks"
        args += ["--blocks", str(block_dir)]
    cfg = workdir / "hub.toml"
    cfg.write_text(
        config
        if config is not None
        else f'max_upload_bytes = 1000000\n[tokens]\n"{TOKEN_A}" = "alpha"\n"{TOKEN_B}" = "beta"\n'
    )
    args += ["--config", str(cfg)]
    with serving(zos_upgrade_cmd(*args), port):
        yield Hub(f"http://127.0.0.1:{port}", root, block_dir)


@pytest.fixture
def start_hub(tmp_path: Path) -> HubFactory:
    """``with start_hub(root) as hub: ...`` (root defaults to a fresh folder)."""

    def start(
        root: Path | None = None, *, blocks: bool = False, config: str | None = None
    ) -> AbstractContextManager[Hub]:
        return hub_process(root or tmp_path / "hub", tmp_path, blocks=blocks, config=config)

    return start


@pytest.fixture
def golden_root(tmp_path: Path) -> Path:
    return make_golden_layout(tmp_path / "golden-hub")


def place_release(hub: Hub, work: Path, *, repo: str = "alpha", name: str = "rel.fl") -> dict[str, bytes]:
    """Pack a small two-block tree straight into a running hub's storage and block folder (started
    with ``blocks=True``); returns the blocks by hex id."""
    import asyncio

    from zos_upgrade.flist.pack import pack
    from zos_upgrade.flist.stores import DirStore

    assert hub.blocks is not None, "start the hub with blocks=True"
    tree = work / f"tree-{repo}-{name}"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(os.urandom(700_000))  # two blocks
    (tree / "README").write_text("hello\n")
    (hub.root / repo).mkdir(parents=True, exist_ok=True)
    asyncio.run(pack(tree, hub.root / repo / name, DirStore(hub.blocks)))
    return {p.name: p.read_bytes() for p in hub.blocks.rglob("*") if p.is_file()}
