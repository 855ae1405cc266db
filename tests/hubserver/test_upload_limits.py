"""Hostile uploads against a real hub: endless SQLite, decompression bombs, a flood from one token
holder, a check over its deadline. Each is refused with its reason, nothing is stored, and the other
repositories are answered promptly all along."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
import time
from pathlib import Path

import httpx

from tests.hostile.badflists import tar_gz
from tests.support.hub import GOLDEN_FLISTS, TOKEN_A, TOKEN_B, Hub, HubFactory
from tests.support.node import tree_digest
from zos_upgrade.flist import Entry, EntryKind, write_flist
from zos_upgrade.flist.v1 import DB_MEMBER

DIR = stat.S_IFDIR | 0o755
ENDLESS_INODE = (
    "CREATE VIEW inode AS WITH RECURSIVE r(ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) "
    f"AS (SELECT 1, 0, '/', 0, 0, 0, {DIR}, 0, 0, 0 UNION ALL "
    "SELECT ino + 1, 1, 'x' || ino, 0, 0, 0, 33188, 0, 0, 0 FROM r) SELECT * FROM r"
)


def config(**extra: object) -> str:
    lines = [f"{key} = {value!r}" for key, value in extra.items()]
    return "\n".join([*lines, "[tokens]", f'"{TOKEN_A}" = "alpha"', f'"{TOKEN_B}" = "beta"', ""])


def endless_view(out: Path) -> Path:
    """A small v2 flist whose inode "table" is a view that never ends."""
    write_flist(out, [Entry("/", EntryKind.DIR, DIR)])
    with contextlib.closing(sqlite3.connect(out)) as db:
        db.execute("DROP TABLE inode")
        db.execute(ENDLESS_INODE)
        db.commit()
    return out


def bomb(out: Path, inflated: int = 16 * 1024 * 1024) -> Path:
    """A v1 archive whose database member is ``inflated`` zeros (~1000:1)."""
    tar_gz(out, [("./", None, ""), (f"./{DB_MEMBER}", bytes(inflated), "")])
    return out


def upload(client: httpx.Client | httpx.AsyncClient, hub: Hub, path: Path, token: str = TOKEN_A):
    files = {"file": (path.name, path.read_bytes())}
    return client.post(hub.url + "/api/flist/me/upload-flist", files=files,
                       headers={"Authorization": f"bearer {token}"})


def stored(hub: Hub) -> dict[str, object]:
    """The hub's storage; alpha (whose uploads are refused) may only be an empty folder."""
    alpha = hub.root / "alpha"
    assert not alpha.exists() or list(alpha.iterdir()) == []  # no file, no temp file left
    return {path: kind for path, kind in tree_digest(hub.root, exclude=()).items() if path != "alpha"}


def seed_beta(hub: Hub) -> dict[str, object]:
    with httpx.Client(timeout=10) as client:
        reply = upload(client, hub, GOLDEN_FLISTS / "v1.flist", TOKEN_B)
        assert reply.status_code == 200, reply.text
    return stored(hub)


def test_a_flood_of_hostile_uploads_never_starves_another_repository(start_hub: HubFactory,
                                                                     tmp_path: Path) -> None:
    view = endless_view(tmp_path / "endless.fl")
    zeros = bomb(tmp_path / "bomb.flist", inflated=3 * 1024 * 1024)  # under the cap, over the ratio
    assert view.stat().st_size < 64 * 1024 and zeros.stat().st_size < 64 * 1024  # small uploads
    cfg = config(upload_checks=2, upload_checks_per_repo=1, upload_check_seconds=5.0,
                 max_inflated_bytes=4 * 1024 * 1024)

    async def flood_and_read(hub: Hub) -> tuple[list[httpx.Response], list[float]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            flood = [asyncio.create_task(upload(client, hub, (view, zeros)[i % 2])) for i in range(48)]
            latencies = []
            for _ in range(10):  # while the flood is on
                started = time.monotonic()
                listing = await client.get(hub.url + "/api/flist/beta")
                download = await client.get(hub.url + "/beta/v1.flist")
                latencies.append(time.monotonic() - started)
                assert listing.status_code == 200 and [e["name"] for e in listing.json()] == ["v1.flist"]
                assert download.content == (GOLDEN_FLISTS / "v1.flist").read_bytes()
            return await asyncio.gather(*flood), latencies

    with start_hub(config=cfg) as hub:
        before = seed_beta(hub)
        started = time.monotonic()
        answers, latencies = asyncio.run(flood_and_read(hub))
        took = time.monotonic() - started
        after = stored(hub)

    assert max(latencies) < 2.0, latencies
    assert took < 30
    refusals = [a.json()["message"] for a in answers if a.status_code == 400]
    busy = [a.json()["message"] for a in answers if a.status_code == 503]
    assert len(refusals) + len(busy) == len(answers), [a.status_code for a in answers]
    assert refusals, busy
    for message in refusals:
        assert ("database holds view 'inode'" in message
                or "inflates to more than 1048576 bytes" in message), message
    for message in busy:
        assert "repository 'alpha'" in message and "retry later" in message, message
    assert after == before  # nothing stored for alpha, no temp file left, beta as it was


def test_a_bomb_is_refused_while_inflating_and_an_honest_upload_still_passes(start_hub: HubFactory,
                                                                              tmp_path: Path) -> None:
    zeros = bomb(tmp_path / "bomb.flist", inflated=60 * 1024 * 1024)
    allowed = max(1024 * 1024, 20 * zeros.stat().st_size)  # the ratio, with its 1 MiB floor
    assert allowed < 4 * 1024 * 1024
    with start_hub(config=config(max_inflated_bytes=64 * 1024 * 1024, max_inflate_ratio=20)) as hub:
        before = seed_beta(hub)
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            refused = upload(client, hub, zeros)
            took = time.monotonic() - started
            assert stored(hub) == before
            honest = upload(client, hub, GOLDEN_FLISTS / "v1.flist")
    assert refused.status_code == 400
    assert f"inflates to more than {allowed} bytes" in refused.json()["message"]
    assert "decompression bomb" in refused.json()["message"]
    assert took < 5  # stopped at the allowance, not after inflating 60 MiB
    assert honest.status_code == 200, honest.text


def test_an_upload_check_over_its_deadline_is_refused(start_hub: HubFactory, tmp_path: Path) -> None:
    # an honest but big flist: its walk (~1.5 s here) takes far longer than the 0.4 s this hub allows
    # a check, which the small seed upload (a few ms) meets even on a loaded machine
    big = tmp_path / "big.fl"
    write_flist(big, [Entry("/", EntryKind.DIR, DIR)]
                + [Entry(f"/d{i:05}", EntryKind.DIR, DIR) for i in range(50_000)])
    with start_hub(config=config(upload_check_seconds=0.4)) as hub:
        before = seed_beta(hub)
        with httpx.Client(timeout=30) as client:
            refused = upload(client, hub, big)
        assert stored(hub) == before
    assert refused.status_code == 400, refused.text
    assert "took longer than the 0.4 s allowed" in refused.json()["message"]
