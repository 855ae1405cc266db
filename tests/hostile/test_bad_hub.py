"""A hub that lies to an installed node: bad ``/light`` answers, bad downloads, bad blocks, a downgrade.

A liar sits in front of the node's real hub and lies on one path per case; the node reads the event
and runs the transaction as the daemon does. Each case must end in a typed error naming what was
wrong, and the node must not change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.hostile.conftest import Liar, Node, assert_node_unchanged, fingerprint, refusal_cause
from tests.support.node import REPO_NAME, service_release
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist import open_flist
from zos_upgrade.flist.blocks import BlockCorrupt
from zos_upgrade.hub import HubAnswerInvalid, NotFound
from zos_upgrade.net import NetworkError, ResponseTooLarge
from zos_upgrade.upgrade import UpgradeFailed
from zos_upgrade.versions import Version
from zos_upgrade.watch import FListSemverWatcher

NAME = "zos:1.1.0.fl"
FQDN = f"{REPO_NAME}/{NAME}"
LIGHT = f"/api/flist/{REPO_NAME}/{NAME}/light"
DOWNLOAD = f"/{REPO_NAME}/{NAME}"


@dataclass(frozen=True)
class Release:
    light: dict[str, Any]  # the real hub's /light of the release
    block_path: str  # the hub path of one block no cache on the node holds


@pytest.fixture(scope="module")
def release(node: Node) -> Release:
    box = node.box
    flist = box.pack(NAME, service_release(box.root, "1.1.0", extra={"opt/app/data.bin": os.urandom(4096)}))
    with open_flist(flist) as reader:
        data = next(e for e in reader.entries() if e.path == "/opt/app/data.bin")
    block = data.blocks[0].id.hex()
    light = httpx.get(f"{box.hub_url}{LIGHT}").json()
    return Release(light, f"/blocks/{block[:2]}/{block}")


def attempt(node: Node, liar: Liar, **options: object) -> BaseException:
    """Upgrade the node to the release through the liar; the typed error at the root of the refusal."""
    try:
        asyncio.run(node.upgrade_to(FQDN, liar.url, **options))
    except UpgradeFailed as failed:
        cause = refusal_cause(failed)
        assert cause is not None
        return cause
    except ZosUpgradeError as exc:  # refused before the transaction: the event could not be read
        return exc
    raise AssertionError("the lie was believed: the upgrade went through")


def refused(node: Node, liar: Liar, error: type[Exception], fragment: str, **options: object) -> None:
    before = fingerprint(node.box)
    exc = attempt(node, liar, **options)
    assert isinstance(exc, error), repr(exc)
    assert fragment in str(exc), str(exc)
    assert_node_unchanged(node, before)


LIGHT_LIES = [
    pytest.param({"body": '{"name": 7, "size": "big", "updated": "yesterday", "type": "regular", "md5": 1}'},
                 HubAnswerInvalid, "unexpected answer shape", id="wrong-types"),
    pytest.param({"body": "[]"}, HubAnswerInvalid, "unexpected answer shape", id="array-not-object"),
    pytest.param({"body": '{"name": "zos:1.1.0.fl", "size": 1, "updated": 1, "type": "regular", '
                          '"md5": "../../etc/passwd"}'},
                 HubAnswerInvalid, "is not 32 lower-case hex digits", id="md5-not-hex"),
    pytest.param({"body": "<html><body><h1>502 Bad Gateway</h1></body></html>", "content_type": "text/html"},
                 HubAnswerInvalid, "not valid JSON (text/html", id="html"),
    pytest.param({"body": '{"name": "', "huge": 20 * 1024 * 1024}, ResponseTooLarge, "", id="huge"),
    pytest.param({"body": '{"name": "zos:1.1', "truncate": 500}, NetworkError, "failed after 2 attempts",
                 id="truncated"),
    pytest.param({"body": "{}", "delay": 5}, NetworkError, "failed after 2 attempts", id="slow"),
    pytest.param({"status": 500, "body": "oops"}, NetworkError, "server error 500", id="server-error"),
]


@pytest.mark.parametrize(("lie", "error", "fragment"), LIGHT_LIES)
def test_a_bad_light_answer_is_refused(node: Node, release: Release, lies: Liar, lie: dict[str, object],
                                       error: type[Exception], fragment: str) -> None:
    lies.lie(LIGHT, **lie)
    refused(node, lies, error, fragment)


def test_a_download_that_does_not_match_the_announced_md5_is_refused(
    node: Node, release: Release, lies: Liar
) -> None:
    lies.lie(LIGHT, body=json.dumps({**release.light, "md5": hashlib.md5(b"another flist").hexdigest()}))
    refused(node, lies, HubAnswerInvalid, "never matched the md5")


@pytest.mark.parametrize(("lie", "error", "fragment"), [
    pytest.param({"body": "<html>login required</html>", "content_type": "text/html"}, HubAnswerInvalid,
                 "never matched the md5", id="html"),
    pytest.param({"from": f"/{REPO_NAME}/zos:1.0.0.fl"}, HubAnswerInvalid, "never matched the md5",
                 id="another-release"),
    pytest.param({"body": "SQLite format 3\0", "truncate": 4096}, NetworkError, "failed after 2 attempts",
                 id="truncated"),
    pytest.param({"body": "SQLite format 3\0", "huge": 2 * 1024 * 1024}, ResponseTooLarge, "",
                 id="huge"),
    pytest.param({"status": 404, "body": '{"status":"error","message":"not found"}'}, NotFound, "404",
                 id="gone"),
])
def test_a_bad_download_is_refused(node: Node, release: Release, lies: Liar, lie: dict[str, object],
                                   error: type[Exception], fragment: str) -> None:
    lies.lie(DOWNLOAD, **lie)
    refused(node, lies, error, fragment, max_flist_bytes=1024 * 1024)


@pytest.mark.parametrize(("lie", "fragment"), [
    pytest.param({"body": "<html>cdn error</html>", "content_type": "text/html"}, "not to the block id",
                 id="html"),
    pytest.param({"from": "/blocks/00/" + "00" * 32}, "not to the block id", id="a-404-page-as-200"),
    pytest.param({"body": "\x00" * 100}, "not to the block id", id="garbage"),
])
def test_a_bad_block_is_refused(node: Node, release: Release, lies: Liar, lie: dict[str, object],
                                fragment: str) -> None:
    lies.lie(release.block_path, **lie)
    before = fingerprint(node.box)
    exc = attempt(node, lies)
    assert isinstance(exc, BlockCorrupt), repr(exc)
    assert fragment in str(exc) and release.block_path.rsplit("/", 1)[1] in str(exc), str(exc)
    assert_node_unchanged(node, before)


def test_a_link_moved_below_the_node_is_never_proposed(node: Node, release: Release, lies: Liar) -> None:
    # the hub's latest link claims 0.9.0: a watcher at 1.0.0 must not offer it, whatever it holds
    lies.lie(f"/api/flist/{REPO_NAME}/latest.fl/light",
             body=json.dumps({**release.light, "type": "symlink", "target": "zos:0.9.0.fl"}))
    before = fingerprint(node.box)

    async def check() -> object:
        async with node.hub_client(lies.url) as hub:
            return await FListSemverWatcher(f"{REPO_NAME}/latest.fl", 60, Version.parse("1.0.0"),
                                            hub=hub).check()

    assert asyncio.run(check()) is None
    assert_node_unchanged(node, before)


def test_a_link_whose_target_escapes_the_hub_is_refused(node: Node, release: Release, lies: Liar) -> None:
    escape = {**release.light, "type": "symlink", "target": "../../../../etc/zos:9.9.9.fl"}
    lies.lie(LIGHT, body=json.dumps(escape))
    before = fingerprint(node.box)
    exc = attempt(node, lies)
    assert isinstance(exc, HubAnswerInvalid) and "not an flist of a repository" in str(exc), repr(exc)
    assert_node_unchanged(node, before)
