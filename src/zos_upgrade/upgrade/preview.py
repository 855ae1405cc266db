"""What a transaction would do, computed from the release's flist file alone: ``zos-upgrade check``.

No block is fetched, no tree materialized, nothing written (not the state directory, not the node,
not the block cache). The plan is the transaction's own (:func:`~zos_upgrade.upgrade.plan.make_plan`
over the installed manifest, the node as it is, and the release's entries), with one substitution:
an flist entry carries no content digest, only its blocks' keys (``key = blake2b(plain block)``,
``flist/blocks.py``). So both sides of the comparison are named by a **block fingerprint** — the
blake2b-256 of a file's block keys in order — computed from the entry for the release, and by
reading and hashing the node's file in 512 KiB blocks for the node. Equal fingerprints mean equal
content, exactly as equal digests do in a real plan.

What the preview cannot know without the blocks, and says so by omission: the text of a changed
service config (it is marked changed, not parsed), and the node paths a release's ``hooks.paths``
names (the data its hooks may change). The bytes to download are the *plain* sizes of the blocks
the node's cache lacks: the stored blocks are compressed, so the transfer is usually smaller.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# the block codecs (flist.blocks) and readers are imported where a preview reads an flist, so a
# daemon that only builds its Upgrader does not load them (issue 19: an idle daemon's memory)
from zos_upgrade.flist.model import Entry, EntryKind
from zos_upgrade.sources.base import VerifiedRelease
from zos_upgrade.upgrade.compat import IncompatibleRelease, check_compatible, compatible_of
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.errors import PlanRefused, PreflightFailed
from zos_upgrade.upgrade.manifest import (
    HOOK_NAMES,
    RELEASE_CONTROL_FILES,
    SERVICE_DIR,
    FileRecord,
    Manifest,
    record_of,
)
from zos_upgrade.upgrade.plan import Plan, make_plan
from zos_upgrade.upgrade.preflight import check_room, check_supervisor, check_trust_files, transaction_sizes

__all__ = ["Preview", "block_fingerprint", "preview_release", "preview_uninstall"]


@dataclass
class Preview:
    """One transaction the next round would run, as planned now."""

    key: str                   # "boot" or the bins package's fqdn
    source: str                # what would be mounted (hub fqdn or flist URL); the package for an uninstall
    from_version: str
    to_version: str            # "" for an uninstall
    compatible: str | None = None   # the release's `compatible` tag (None: untagged, for every node)
    refused: str | None = None      # why the transaction would be refused before changing anything
    plan: Plan | None = None        # None when refused before the plan
    hooks: list[str] = field(default_factory=list)      # hooks that would run, in their order
    blocks_total: int = 0
    blocks_missing: int = 0         # blocks the node's cache lacks: what would be downloaded
    download_bytes: int = 0         # plain size of those blocks (the compressed transfer is smaller)
    preflight: dict[str, str] = field(default_factory=dict)  # check -> "ok" or why it fails

    @property
    def preflight_ok(self) -> bool:
        return all(v == "ok" for v in self.preflight.values())


def block_fingerprint(keys: Iterable[bytes]) -> str:
    """The content of a file named by its blocks' keys, in order (both flist formats)."""
    digest = hashlib.blake2b(digest_size=32)
    for key in keys:
        digest.update(key)
    return "blocks:" + digest.hexdigest()


def _chunks(data: bytes) -> Iterator[bytes]:
    from zos_upgrade.flist.blocks import BLOCK_SIZE

    for start in range(0, len(data), BLOCK_SIZE):
        yield data[start:start + BLOCK_SIZE]


def _file_chunks(path: Path) -> Iterator[bytes]:
    from zos_upgrade.flist.blocks import BLOCK_SIZE

    with open(path, "rb") as handle:
        while chunk := handle.read(BLOCK_SIZE):
            yield chunk


def _fingerprint(chunks: Iterable[bytes], width: int) -> str:
    """The block fingerprint of content given as 512 KiB chunks, keyed as the flist's format keys."""
    return block_fingerprint(hashlib.blake2b(chunk, digest_size=width).digest() for chunk in chunks)


@dataclass
class _Release:
    """What the preview reads from an flist file: entries as plan records, hooks, blocks."""

    tags: dict[str, str]
    width: int                                   # key width: 16 (v1) or 32 (v2)
    files: dict[str, FileRecord] = field(default_factory=dict)
    service_fingerprints: dict[str, str] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    blocks: dict[bytes, int] = field(default_factory=dict)  # block id -> plain size

    def take(self, entry: Entry) -> None:
        from zos_upgrade.flist.blocks import BLOCK_SIZE

        rel = entry.path.lstrip("/")
        if not rel or entry.kind is EntryKind.SPECIAL:
            return  # scan_release skips special files too
        for index, ref in enumerate(entry.blocks):  # every file is materialized, hooks included
            self.blocks[ref.id] = min(BLOCK_SIZE, entry.size - index * BLOCK_SIZE)
        if rel in RELEASE_CONTROL_FILES:
            if rel in HOOK_NAMES:
                self.hooks.append(rel)
            return
        if entry.kind is EntryKind.DIR:
            self.files[rel] = FileRecord("dir", entry.permissions, 0, "")
        elif entry.kind is EntryKind.LINK:
            self.files[rel] = FileRecord("link", 0o777, 0, entry.target)  # a symlink's mode on Linux
        else:
            fingerprint = block_fingerprint(ref.key for ref in entry.blocks)
            self.files[rel] = FileRecord("file", entry.permissions, entry.size, fingerprint)
            name = rel[len(SERVICE_DIR) + 1:-len(".yaml")]
            if rel.startswith(SERVICE_DIR + "/") and rel.endswith(".yaml") and "/" not in name:
                self.service_fingerprints[name] = fingerprint


def _read_release(flist: Path) -> _Release:
    from zos_upgrade.flist import open_flist

    with open_flist(flist) as reader:
        release = _Release(tags=reader.tags(), width=16 if reader.format == "v1" else 32)
        for entry in reader.entries():
            release.take(entry)
    release.hooks.sort(key=HOOK_NAMES.index)
    return release


def _services(found: _Release, old: Manifest | None) -> dict[str, str]:
    """Service name -> config text: the installed text when the fingerprints agree, else a marker
    (the new text is in blocks the preview does not fetch; the plan only compares texts)."""
    services: dict[str, str] = {}
    for name, fingerprint in found.service_fingerprints.items():
        text = old.services.get(name) if old else None
        same = text is not None and _fingerprint(_chunks(text.encode()), found.width) == fingerprint
        services[name] = text if same and text is not None else f"changed: {fingerprint}"
    return services


def _plan_release(ctx: Context, release: VerifiedRelease, preview: Preview) -> Manifest | None:
    found = _read_release(release.flist)
    preview.compatible = compatible_of(found.tags)
    preview.hooks = found.hooks
    try:
        check_compatible(preview.compatible, ctx.settings.compatible, release.source)
    except IncompatibleRelease as exc:
        preview.refused = f"{type(exc).__name__}: {exc}"
        return None
    cache = ctx.flister.cache
    missing = [size for block_id, size in found.blocks.items()
               if not os.path.lexists(cache.path_for(block_id))]
    preview.blocks_total, preview.blocks_missing, preview.download_bytes = (
        len(found.blocks), len(missing), sum(missing))
    old = ctx.manifests.load(release.key)
    services = _services(found, old)
    settings, boot = ctx.settings, release.target == "boot"
    width = found.width

    def node(rel: str) -> FileRecord | None:
        return record_of(ctx.files.node_path(rel), lambda path: _fingerprint(_file_chunks(path), width))

    try:
        preview.plan = make_plan(
            old_files=old.files if old else {}, old_services=old.services if old else {},
            new_files=found.files, new_services=services, node=node, protected=settings.protected,
            program=settings.program if settings.self_update and boot else None, require_services=boot,
            source=release.source, owned_elsewhere=ctx.owned_elsewhere(release.key), reserved=ctx.reserved,
        )
    except PlanRefused as exc:
        preview.refused = f"{type(exc).__name__}: {exc}"
        return None
    return Manifest(kind=release.target, fqdn=release.fqdn, source=release.source, version=release.version,
                    md5=release.md5, info={}, files=found.files, services=services, installed=0.0)


async def preview_release(ctx: Context, release: VerifiedRelease) -> Preview:
    """The transaction that would install ``release`` (its flist file verified by its source)."""
    old = ctx.manifests.load(release.key)
    preview = Preview(key=release.key, source=release.source, from_version=old.version if old else "",
                      to_version=release.version)
    manifest = await asyncio.to_thread(_plan_release, ctx, release, preview)
    await _preflight(ctx, preview, manifest)
    return preview


async def preview_uninstall(ctx: Context, old: Manifest, plan: Plan) -> Preview:
    """The transaction that would remove the bins package ``old`` (planned by the Upgrader)."""
    preview = Preview(key=old.fqdn, source=old.fqdn, from_version=old.version, to_version="", plan=plan)
    await _preflight(ctx, preview, None)
    return preview


async def _preflight(ctx: Context, preview: Preview, new: Manifest | None) -> None:
    """The transaction's preflight checks, each judged (a failure is reported, not raised)."""

    async def trust() -> None:
        await asyncio.to_thread(check_trust_files, ctx.settings.trust_files)

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "supervisor": lambda: check_supervisor(ctx.supervisor), "trust": trust}
    plan = preview.plan
    if plan is not None:
        async def space() -> None:
            staged, kept = await asyncio.to_thread(transaction_sizes, plan, new, ctx.files.node_path)
            settings = ctx.settings
            await asyncio.to_thread(check_room, root=ctx.root, state_dir=ctx.state_dir, staged=staged,
                                    backed_up=kept, free_space=settings.free_space,
                                    margin=settings.space_margin)

        checks["space"] = space
    for name, check in checks.items():
        try:
            await check()
            preview.preflight[name] = "ok"
        except PreflightFailed as exc:
            preview.preflight[name] = str(exc)
        except OSError as exc:  # e.g. a state directory that does not exist yet
            preview.preflight[name] = f"cannot be checked: {exc}"
