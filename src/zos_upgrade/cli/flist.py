"""`zos-upgrade flist pack | ls | unpack | verify` (SPEC 13).

Long work shows a rich progress bar when stderr is a terminal and stays quiet otherwise (the flist
layer logs one structured line per operation). The bar is drawn on the console human log lines use
(:func:`zos_upgrade.log.console`), so a log line lands above it, never inside it; with human logs the
command's own summary line is the only one (the flist layer's summary log line is the same facts).
Errors of the flist layer become exit 1 through the root group; bad options are click usage errors,
exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import click

from zos_upgrade.flist.chunking import ChunkingError, parse_chunking
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.model import Entry, EntryKind, FlistError
from zos_upgrade.flist.stores import BlockStore, Route, Router
from zos_upgrade.log import console, human_logs

# each subcommand imports its own engine when it runs (materialize, verify, pack): a pack's start-up
# time is part of what it costs the release engineer (issue 19) and needs none of the others

__all__ = ["command", "parse_store_specs"]

# rfs writes a ranged store as "00-7f=URL" (hex first-byte range, inclusive)
_RANGED = re.compile(r"^(?P<start>[0-9a-fA-F]{2})-(?P<end>[0-9a-fA-F]{2})=(?P<url>.+)$")


class VerifyFailed(FlistError):
    """Some blocks of the flist are missing or corrupt (the command listed each one)."""


def parse_store_specs(specs: Sequence[str]) -> list[Route]:
    """``--store URL`` (every block) or ``--store 00-7f=URL`` (blocks whose id starts in that range)."""
    routes: list[Route] = []
    for spec in specs:
        match = _RANGED.match(spec)
        if match:
            start, end = int(match["start"], 16), int(match["end"], 16)
            if start > end:
                raise click.BadParameter(f"{spec!r}: range start {start:02x} is after its end {end:02x}",
                                         param_hint="--store")
            routes.append(Route(start, end, match["url"]))
        elif "://" in spec:
            routes.append(Route(0, 255, spec))
        else:
            raise click.BadParameter(
                f"{spec!r}: expected a store URL (dir:///path, http(s)://..., zdb://..., s3://...) or "
                "RANGE=URL with a hex first-byte range like 00-7f",
                param_hint="--store",
            )
    return routes


def _parse_tags(tags: Sequence[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{tag!r}: expected key=value", param_hint="--tag")
        parsed[key] = value
    return parsed


def _on_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _summary_once(*loggers: str) -> Iterator[None]:
    """With human logs, mute the flist layer's INFO summary of the operation: the command prints it."""
    if not human_logs():
        yield
        return
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress callback drawing a bar on a terminal; None (no output at all) otherwise."""
    if not _on_terminal():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console(), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _tree_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _flist_bytes(path: Path) -> int:
    with open_flist(path) as reader:
        return sum(e.size for e in reader.entries() if e.kind is EntryKind.FILE)


def _store_for(specs: Sequence[str]) -> BlockStore | None:
    routes = parse_store_specs(specs)
    return Router(routes) if routes else None


@click.group(name="flist")
def command() -> None:
    """Pack, list, unpack and verify flists (v1 .flist and v2 .fl)."""


@command.command(name="pack")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The flist to write: NAME.fl (v2, rfs) or NAME.flist (v1, 0-flist).")
@click.option("--store", "stores", multiple=True, required=True, metavar="[RANGE=]URL",
              help="Where blocks go: dir:///path, zdb://host:port/ns, s3://bucket/prefix; RANGE like 00-7f "
                   "limits a store to ids whose first byte is in it. Repeatable; recorded in the flist.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (v2) or metadata (v1) entry.")
@click.option("--chunking", "chunking_text", default="fixed", show_default=True, metavar="fixed|cdc",
              help="Where files are cut into blocks: fixed 512 KiB blocks (rfs and 0-flist mount them), or "
                   "cdc: content-defined chunks (v2 .fl only; an in-file change then costs about what "
                   "changed), for zos-upgrade nodes only: rfs cannot mount such an flist. "
                   "cdc:MIN:AVG:MAX sets the chunk sizes in bytes.")
def pack_command(src: Path, out: Path, stores: tuple[str, ...], tags: tuple[str, ...],
                 chunking_text: str) -> None:
    """Pack directory SRC into an flist and upload its blocks."""
    from zos_upgrade.flist.pack import pack

    try:
        chunking = parse_chunking(chunking_text)
    except ChunkingError as exc:
        raise click.BadParameter(str(exc), param_hint="--chunking") from exc
    routes = parse_store_specs(stores)
    parsed_tags = _parse_tags(tags)

    async def run() -> None:
        store = Router(routes)
        try:
            with _summary_once("zos_upgrade.flist.pack"), \
                    _progress("packing", _tree_bytes(src) if _on_terminal() else None) as progress:
                report = await pack(src, out, store, tags=parsed_tags, routes=routes, progress=progress,
                                    chunking=chunking)
        finally:
            await store.aclose()
        click.echo(
            f"packed {report.entries} entries ({report.files} files, {report.bytes_read} bytes) into {out}: "
            f"{report.blocks_unique} distinct blocks, {report.blocks_uploaded} uploaded "
            f"({report.bytes_uploaded} bytes), {report.blocks_present} already in the store"
        )

    # what the imports made lives to the end: the pack's collections need not walk it again
    gc.freeze()
    asyncio.run(run())
    # nor need the interpreter's last collection walk every entry and block ref of the pack before
    # the exit frees them all (measured on the 200 MB benchmark tree: 30-70 ms, one core)
    gc.freeze()


def _entry_json(entry: Entry) -> dict[str, object]:
    return {
        "path": entry.path,
        "type": entry.kind.value,
        "mode": f"{entry.permissions:04o}",
        "size": entry.size,
        "target": entry.target if entry.kind is EntryKind.LINK else None,
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime": entry.mtime,
    }


def _entry_line(entry: Entry) -> str:
    line = f"{entry.kind.value:<7} {entry.permissions:04o} {entry.uid:>5}:{entry.gid:<5} {entry.size:>12} "
    line += entry.path
    if entry.kind is EntryKind.LINK:
        line += f" -> {entry.target}"
    return line


@command.command(name="ls")
@click.argument("flist", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def ls_command(flist: Path, as_json: bool) -> None:
    """List every entry of FLIST: type, mode, owner, size, path (and link target)."""
    with open_flist(flist) as reader:
        for entry in reader.entries():
            click.echo(json.dumps(_entry_json(entry)) if as_json else _entry_line(entry))


@command.command(name="unpack")
@click.argument("flist", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--store", "stores", multiple=True, metavar="[RANGE=]URL",
              help="Where to read blocks (default: the stores recorded in the flist). Repeatable.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              help="A block cache directory: blocks found there are not downloaded again (blocks "
                   "of a dir:// store on the same file system are hard-linked into it, not copied).")
@click.option("--workers", type=click.IntRange(min=0), default=None, metavar="N",
              help="File-writer processes (for a dir:// or plain http:// store, which they read "
                   "themselves, or any store with --cache): 0 writes in this process only "
                   "[default: one per core, once the tree is big enough to repay starting them].")
def unpack_command(flist: Path, dest: Path, stores: tuple[str, ...], cache: Path | None,
                   workers: int | None) -> None:
    """Materialize FLIST into DEST (absent or empty)."""
    from zos_upgrade.flist.cache import BlockCache
    from zos_upgrade.flist.materialize import materialize

    store = _store_for(stores)

    async def run() -> None:
        try:
            total = _flist_bytes(flist) if _on_terminal() else None
            with _summary_once("zos_upgrade.flist.materialize"), _progress("unpacking", total) as progress:
                report = await materialize(flist, dest, store=store, progress=progress, workers=workers,
                                           cache=BlockCache(cache) if cache else None)
        finally:
            if store is not None:
                await store.aclose()
        fields = asdict(report)
        click.echo(f"unpacked {flist} into {dest}: " + ", ".join(f"{k}={v}" for k, v in fields.items()))

    asyncio.run(run())


@command.command(name="verify")
@click.argument("flist", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--store", "stores", multiple=True, metavar="[RANGE=]URL",
              help="Where to read blocks (default: the stores recorded in the flist). Repeatable.")
def verify_command(flist: Path, stores: tuple[str, ...]) -> None:
    """Check that every block of FLIST is present and authentic; exit 1 listing each bad one."""
    from zos_upgrade.flist.verify import verify

    store = _store_for(stores)

    async def run() -> None:
        try:
            report = await verify(flist, store)
        finally:
            if store is not None:
                await store.aclose()
        for problem in report.missing + report.corrupt:
            kind = "missing" if problem in report.missing else "corrupt"
            click.echo(f"{kind} {problem.block_id} used by {', '.join(problem.paths)}: {problem.reason}")
        if not report.ok:
            raise VerifyFailed(
                f"{flist}: {len(report.missing)} missing and {len(report.corrupt)} corrupt blocks "
                f"out of {report.blocks}"
            )
        click.echo(f"{flist}: all {report.blocks} blocks of {report.files} files present and authentic")

    asyncio.run(run())
