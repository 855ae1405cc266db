"""What one materialize did, counted as it goes: the :class:`MaterializeReport` it returns."""

from __future__ import annotations

from dataclasses import dataclass

from zos_upgrade.flist.filewrite import Tally

__all__ = ["MaterializeReport", "add_tally"]


@dataclass
class MaterializeReport:
    """What one materialize did. A block needed again while it is being fetched waits for that fetch
    and is counted neither as fetched nor as from the cache."""

    entries: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    specials: int = 0
    specials_skipped: int = 0
    bytes_written: int = 0
    blocks_fetched: int = 0
    blocks_from_cache: int = 0
    bytes_downloaded: int = 0
    owners_skipped: int = 0
    writer_processes: int = 0  # file-writer processes that took part (0: all written in this process)


def add_tally(report: MaterializeReport, tally: Tally) -> None:
    """Add what writing (part of) one file counted."""
    report.blocks_from_cache += tally.from_cache
    report.blocks_fetched += tally.fetched
    report.bytes_downloaded += tally.downloaded
    report.bytes_written += tally.added
    report.owners_skipped += tally.owner_skipped
