"""``zos-upgrade hub export DEST``: the hub's whole read API as a static tree any file server, bucket or
CDN can serve to nodes (issue 17, item 5c).

Every answer is asked of the hub's own application in-process (its ASGI app, no socket), so an
exported file holds exactly the bytes the live hub answers at that URL. What a plain file tree cannot
do, and how the export meets it:

- **A path that is both an answer and a folder** (``/api/flist``, ``/api/flist/<repo>``,
  ``/api/flist/<repo>/<name>`` also have children): the answer is the folder's ``index.html``. A static
  server answers the bare path with a redirect to ``path/`` and serves the index there (Python's
  ``http.server``, S3 website hosting, nginx ``index``); the hub client follows redirects, and it reads
  the body as JSON whatever its ``Content-Type``.
- **Links become copies**: a bucket has no symlinks, so ``<repo>/<link>`` is a copy of its target and the
  link's ``/light`` is the hub's answer for the link (its ``target`` field names the file).
- **Query strings** do not select anything in the hub's read API; static servers ignore them, so a
  cache-busting query still gets the right file.
- **Only GET answers with status 200** are exported; the ``INFO`` method, conditional answers (304) and
  errors are the live hub's alone. A 404 of the static server is its own page, not the hub's JSON.
- **Blocks** are ``blocks/<xx>/<id>`` (the layout ``http://`` stores and the hub client read first),
  hard-linked from the hub's block folder when it is on the same file system, else copied; each is
  opened without following a link (:class:`BlockFolder`).
- **TUF metadata**, when the storage has it (``<root>/.tuf/<repo>/metadata/``), is copied to
  ``tuf/<repo>/metadata/``, and every flist of that repository is also written as the consistent
  snapshot target ``tuf/<repo>/targets/<sha256>.<name>``.

The tree is built in a temporary sibling of DEST, every file and folder fsynced, then renamed into
place; ``replace=True`` swaps it for an earlier export (the old tree is removed after the swap).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from zos_upgrade.fsutil import fsync_dir
from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.names import FLIST_SUFFIXES
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.http import open_regular
from zos_upgrade.hubserver.storage import BlockFolder

if TYPE_CHECKING:
    import httpx

__all__ = ["ExportError", "ExportReport", "export_hub"]

log = logging.getLogger(__name__)

_BLOCK_HEX = re.compile(r"(?:[0-9a-f]{32}|[0-9a-f]{64})")
_FANOUT = re.compile(r"[0-9a-f]{2}")
_INDEX = "index.html"
# top-level names the export itself uses: a repository of one of these names would shadow them
# (the live hub's routes shadow it the same way), so its downloads are not exported
_RESERVED = frozenset({"api", "blocks", "tuf"})
_CHUNK = 1 << 20
_TUF_DIR = ".tuf"


class ExportError(HubError):
    """The export cannot be made (DEST in the way, storage unreadable); nothing at DEST changed."""


@dataclass
class ExportReport:
    dest: Path
    files: int = 0
    bytes: int = 0
    blocks: int = 0
    blocks_linked: int = 0
    skipped: list[str] = field(default_factory=list)  # URL paths the hub did not answer with 200


class _Tree:
    """The partial tree: writes files under URL paths, fsyncs each, remembers folders to fsync."""

    def __init__(self, base: Path, report: ExportReport) -> None:
        self.base = base
        self.report = report
        self.folders: set[Path] = {base}

    def path_for(self, url_path: str, *, has_children: bool = False) -> Path:
        # the file is named as the static server will look it up: by the unquoted URL segment
        parts = [unquote(p) for p in url_path.split("/") if p]
        if any(p in (".", "..") or "/" in p or "\x00" in p for p in parts):
            raise ExportError(f"refusing to export URL path {url_path!r}")
        path = self.base.joinpath(*parts)
        return path / _INDEX if has_children else path

    def _parent(self, path: Path) -> None:
        parent = path.parent
        parent.mkdir(parents=True, exist_ok=True)
        while parent != self.base and parent not in self.folders:
            self.folders.add(parent)
            parent = parent.parent

    def write(self, path: Path, chunks: list[bytes]) -> None:
        self._parent(path)
        with open(path, "xb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        self.report.files += 1
        self.report.bytes += sum(map(len, chunks))

    def place_fd(self, fd: int, path: Path) -> bool:
        """Hard-link the open file ``fd`` at ``path`` (True), or copy it there when linking fails."""
        self._parent(path)
        try:
            # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N links the very inode that was opened; a
            # src_dir_fd makes Python call linkat (with default fds it calls link(), which does not follow)
            proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.link(str(fd), path, src_dir_fd=proc, follow_symlinks=True)
            finally:
                os.close(proc)
            self.report.files += 1
            return True
        except OSError as exc:
            # another file system (EXDEV), no /proc (ENOENT), a link limit (EMLINK), not allowed
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EACCES, errno.EMLINK):
                raise
        with open(path, "xb") as out:
            offset, size = 0, os.fstat(fd).st_size
            while offset < size:
                chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
                if not chunk:
                    break
                out.write(chunk)
                offset += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        self.report.files += 1
        self.report.bytes += offset
        return False

    def seal(self) -> None:
        for folder in sorted(self.folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)


async def export_hub(config: HubConfig, dest: Path, *, replace: bool = False) -> ExportReport:
    """Write the read API of the hub ``config`` describes as a static tree at ``dest``."""
    import httpx

    from zos_upgrade.hubserver.app import create_app

    dest = Path(os.path.abspath(dest))
    if dest.exists() and not replace and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} exists and is not an empty folder (--replace swaps an earlier export)")
    if not dest.parent.is_dir():
        raise ExportError(f"{dest.parent} is not a folder")
    for source in (config.root, config.blocks):
        real = os.path.realpath(source) if source is not None else None
        if real is not None and (os.path.realpath(dest) + os.sep).startswith(real + os.sep):
            raise ExportError(f"{dest} lies inside {source}: the export would become part of the hub")
    partial = dest.with_name(f".{dest.name}.partial-{secrets.token_hex(4)}")
    partial.mkdir()
    report = ExportReport(dest)
    tree = _Tree(partial, report)
    try:
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.export") as client:
            await _export_api(client, tree, app.state.hub.storage.root)
        if config.blocks is not None:
            _export_blocks(BlockFolder(config.blocks), tree)
        tree.seal()
        _swap_in(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("hub exported", extra={"dest": str(dest), "files": report.files, "blocks": report.blocks})
    return report


async def _export_api(client: httpx.AsyncClient, tree: _Tree, root: Path) -> None:
    repositories = await _json(client, tree, "/api/repositories")
    await _json(client, tree, "/api/flist", has_children=True)
    await _json(client, tree, "/api/fileslist")
    for repo_doc in repositories or []:
        repo = repo_doc["name"]
        listing = await _json(client, tree, f"/api/flist/{_q(repo)}", has_children=True) or []
        for item in listing:
            name, kind = item["name"], item["type"]
            api = f"/api/flist/{_q(repo)}"
            if kind == "tag":
                members = await _json(client, tree, f"{api}/tags/{_q(name)}") or []
                for member in members:
                    await _file(client, tree, f"/{_q(repo)}/tags/{_q(name)}/{_q(member['name'])}", repo)
                continue
            if kind == "taglink":
                await _json(client, tree, f"{api}/{_q(name)}/taglink")
                continue
            # a regular flist or a symlink to one
            await _json(client, tree, f"{api}/{_q(name)}", has_children=True)
            for leaf in ("light", "metadata"):
                await _json(client, tree, f"{api}/{_q(name)}/{leaf}")
            await _file(client, tree, f"/{_q(repo)}/{_q(name)}", repo)
            await _file(client, tree, f"/{_q(repo)}/{_q(name)}.md5", repo)
        _export_tuf(root, repo, tree)


async def _json(client: httpx.AsyncClient, tree: _Tree, url_path: str, *, has_children: bool = False) -> Any:
    response = await client.get(url_path)
    if response.status_code != 200:
        tree.report.skipped.append(f"{url_path} ({response.status_code})")
        return None
    tree.write(tree.path_for(url_path, has_children=has_children), [response.content])
    return response.json()


async def _file(client: httpx.AsyncClient, tree: _Tree, url_path: str, repo: str) -> None:
    if repo in _RESERVED:
        tree.report.skipped.append(f"{url_path} (repository name {repo!r} is a path of the export)")
        return
    async with client.stream("GET", url_path) as response:
        if response.status_code != 200:
            tree.report.skipped.append(f"{url_path} ({response.status_code})")
            return
        chunks = [chunk async for chunk in response.aiter_bytes(_CHUNK)]
    tree.write(tree.path_for(url_path), chunks)


def _export_tuf(root: Path, repo: str, tree: _Tree) -> None:
    """``<root>/.tuf/<repo>/metadata/*.json`` as ``tuf/<repo>/metadata/``, and the repository's flists as
    consistent-snapshot targets ``tuf/<repo>/targets/<sha256>.<name>``."""
    metadata = root / _TUF_DIR / repo / "metadata"
    if not _plain_dir(root / _TUF_DIR) or not _plain_dir(root / _TUF_DIR / repo) or not _plain_dir(metadata):
        return
    for name in sorted(os.listdir(metadata)):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # temp files of a metadata write in progress, anything else
        fd = open_regular(metadata / name)
        if fd is None:
            continue
        try:
            data = _read_all(fd)
        finally:
            os.close(fd)
        tree.write(tree.path_for(f"/tuf/{_q(repo)}/metadata/{_q(name)}"), [data])
    repo_dir = tree.base / repo
    if not repo_dir.is_dir():
        return
    for path in sorted(repo_dir.iterdir()):
        if path.is_file() and path.name.endswith(FLIST_SUFFIXES):
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            tree.write(tree.path_for(f"/tuf/{_q(repo)}/targets/{digest}.{_q(path.name)}"), [data])


def _export_blocks(blocks: BlockFolder, tree: _Tree) -> None:
    """Every block of the hub's block folder (sharded or flat) as ``blocks/<xx>/<id>``."""
    if not _plain_dir(blocks.root):
        return
    found: set[str] = set()
    for name in sorted(os.listdir(blocks.root)):
        if _BLOCK_HEX.fullmatch(name):
            found.add(name)
        elif _FANOUT.fullmatch(name) and _plain_dir(blocks.root / name):
            found.update(n for n in os.listdir(blocks.root / name)
                         if _BLOCK_HEX.fullmatch(n) and n[:2] == name)
    for hexid in sorted(found):
        fd = blocks.open_block(hexid)  # never through a link
        if fd is None:
            continue
        try:
            linked = tree.place_fd(fd, tree.path_for(f"/blocks/{hexid[:2]}/{hexid}"))
        finally:
            os.close(fd)
        tree.report.blocks += 1
        tree.report.blocks_linked += linked


def _swap_in(partial: Path, dest: Path) -> None:
    old: Path | None = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
        os.rename(dest, old)
    os.rename(partial, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _read_all(fd: int) -> bytes:
    parts, offset = [], 0
    while chunk := os.pread(fd, _CHUNK, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)

