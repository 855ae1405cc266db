"""What a transaction would do, computed from the release's flist file alone: ``zos-upgrade check``.

No block is fetched, no tree materialized, nothing written (not the state directory, not the node,
not the block cache). The plan is the transaction's own (:func:`~zos_upgrade.upgrade.plan.make_plan`
over the installed manifest, the node as it is, and the release's entries), with one substitution:
an flist entry carries no content digest, only its blocks' keys (``key = blake2b(plain block)``,
``flist/blocks.py``). So both sides of the comparison are named by a **block fingerprint** — the
blake2b-256 of a file's block keys in order — computed from the entry for the release, and by
for the node: the fingerprint its manifest recorded while the node file still has the recorded
digest, else by reading the node's file, cutting it into blocks the way the flist was cut (fixed
512 KiB blocks, or content-defined chunks as its ``chunking`` tag says: ``flist/chunking.py``) and
hashing them. Equal fingerprints mean equal content, exactly as equal digests do in a real plan.

What the preview cannot know without the blocks, and says so by omission: the text of a changed
service config (it is marked changed, not parsed), and the node paths a release's ``hooks.paths``
names (the data its hooks may change). The bytes to download are the *plain* sizes of the blocks
neither the node's cache nor its installed files hold (the manifest lists their blocks): the
stored blocks are compressed, so the transfer is usually smaller.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# the flist readers and block codecs are imported where a preview reads an flist, so a daemon
# that only builds its Upgrader does not load them (issue 19: an idle daemon's memory)
from zos_upgrade.flist.chunking import Chunking, data_chunks, file_chunks
from zos_upgrade.sources.base import VerifiedRelease
from zos_upgrade.upgrade.compat import IncompatibleRelease, check_compatible, compatible_of
from zos_upgrade.upgrade.context import Context
from zos_upgrade.upgrade.errors import PlanRefused, PreflightFailed
from zos_upgrade.upgrade.manifest import FileRecord, Manifest, digest_file, record_of
from zos_upgrade.upgrade.plan import Plan, make_plan
from zos_upgrade.upgrade.preflight import check_room, check_supervisor, check_trust_files, transaction_sizes
from zos_upgrade.upgrade.release_entries import ReleaseEntries, block_fingerprint, read_entries
from zos_upgrade.upgrade.staging import installed_blocks

__all__ = ["Preview", "block_fingerprint", "content_fingerprint", "preview_release", "preview_uninstall"]


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
    blocks_missing: int = 0         # blocks neither the cache nor the node's files hold: downloaded
    download_bytes: int = 0         # plain size of those blocks (the compressed transfer is smaller)
    preflight: dict[str, str] = field(default_factory=dict)  # check -> "ok" or why it fails

    @property
    def preflight_ok(self) -> bool:
        return all(v == "ok" for v in self.preflight.values())


def content_fingerprint(content: Path | bytes, chunking: Chunking, width: int) -> str:
    """The block fingerprint of a node file (a path) or of text already read (bytes): cut into blocks
    as the release's flist cuts files (its chunking tag), each keyed as its format keys them."""
    chunks: Iterator[bytes] = (file_chunks(content, chunking) if isinstance(content, Path)
                               else data_chunks(content, chunking))
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    return block_fingerprint(hashlib.blake2b(chunk, digest_size=width).digest() for chunk in chunks)


def _read_release(flist: Path) -> ReleaseEntries:
    from zos_upgrade.flist import open_flist

    with open_flist(flist) as reader:
        return read_entries(reader)


def _services(found: ReleaseEntries, old: Manifest | None) -> dict[str, str]:
    """Service name -> config text: the installed text when the fingerprints agree, else a marker
    (the new text is in blocks the preview does not fetch; the plan only compares texts)."""
    services: dict[str, str] = {}
    for name, fingerprint in found.service_fingerprints.items():
        text = old.services.get(name) if old else None
        same = (text is not None
                and content_fingerprint(text.encode(), found.chunking, found.width) == fingerprint)
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
    old = ctx.manifests.load(release.key)
    installed = installed_blocks(ctx.flister.downloads_dir, old)
    # blocks the installed files hold are read from the node (``node_blocks``), not downloaded
    held = {key for recorded in installed.values() for key in recorded.keys}
    missing = [size for block_id, size in found.blocks.items()
               if found.block_keys[block_id] not in held
               and not os.path.lexists(cache.path_for(block_id))]
    preview.blocks_total, preview.blocks_missing, preview.download_bytes = (
        len(found.blocks), len(missing), sum(missing))
    services = _services(found, old)
    settings, boot = ctx.settings, release.target == "boot"
    width, chunking = found.width, found.chunking

    def fingerprint(rel: str, path: Path) -> str:
        """The node file's fingerprint: the one its manifest recorded while the file still has the
        recorded content (the transaction's own test, ``staging.py``; whatever its block layout),
        else computed over blocks cut as the release's flist cuts them."""
        recorded, record = installed.get(rel), (old.files.get(rel) if old else None)
        if recorded is not None and record is not None and digest_file(path) == record.digest:
            return recorded.fingerprint
        return content_fingerprint(path, chunking, width)

    def node(rel: str) -> FileRecord | None:
        return record_of(ctx.files.node_path(rel), lambda path: fingerprint(rel, path))

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
