"""A release server that lies to an installed node running in publisher mode.

The node (release 1.0.0 installed) trusts one ed25519 key. A real ``zos-upgrade release serve``
publishes 1.0.0 and 1.1.0 signed by that key, with a liar in front of it (and another in front of
the hub that holds the flists). One round is what the daemon does: the publisher watcher checks,
and a proposed release is verified by a ``PublisherSource`` and installed. Every lie must end in a
typed error naming what was wrong (or, for a downgrade, in no proposal at all) and the node must not change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.hostile.conftest import (
    Liar,
    Node,
    assert_node_unchanged,
    fingerprint,
    lying_in_front_of,
    refusal_cause,
)
from tests.support.node import REPO_NAME, service_release
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.net import NetworkError, ResponseTooLarge, RetryPolicy
from zos_upgrade.node.events import ReleaseEvent
from zos_upgrade.publisher import (
    BadSignature,
    HashMismatch,
    HTTPPublisher,
    InvalidAnswer,
    LatestNotListed,
    ReleaseTree,
    ReplayedRelease,
    UnknownKey,
    UnsignedRelease,
    Upgrade,
)
from zos_upgrade.publisher.signing import file_hash, generate_key, sign_upgrade
from zos_upgrade.sources import PublisherSource
from zos_upgrade.upgrade import Flister, UpgradeFailed, Upgrader
from zos_upgrade.versions import Version
from zos_upgrade.watch import PublisherWatcher

CURRENT = Version.parse("1.0.0")
NEXT = Version.parse("1.1.0")


@dataclass
class Site:
    key: Ed25519PrivateKey
    liar: Liar  # in front of the release server
    hub_liar: Liar  # in front of the hub serving the flists
    flist_url: dict[str, str]  # version -> the URL its release object names (through the hub liar)
    flist_hash: dict[str, str]

    def signed(self, version: str, *, flist: str | None = None, hash: str | None = None,
               key: Ed25519PrivateKey | None = None) -> Upgrade:
        return sign_upgrade(Version.parse(version), flist or self.flist_url[version],
                            hash or self.flist_hash[version], key or self.key)


@pytest.fixture(scope="module")
def site(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    box = node.box
    work = tmp_path_factory.mktemp("release-site")
    key = generate_key()
    tree = ReleaseTree(work / "releases")
    flists = {"1.0.0": box.hub_root / REPO_NAME / "zos:1.0.0.fl",
              "1.1.0": box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0"))}
    port = free_port()
    with lying_in_front_of(box.hub_url, work / "hub-lies") as hub_liar:
        urls = {v: f"{hub_liar.url}/{REPO_NAME}/{p.name}" for v, p in flists.items()}
        for version, path in flists.items():
            tree.add(version, flist_url=urls[version], flist_file=path, key=key)
        cmd = zos_upgrade_cmd("release", "serve", "--root", str(tree.root), "--port", str(port))
        with serving(cmd, port), lying_in_front_of(f"http://127.0.0.1:{port}", work / "lies") as liar:
            yield Site(key, liar, hub_liar, urls, {v: file_hash(p) for v, p in flists.items()})


@pytest.fixture
def pub(site: Site) -> Iterator[Site]:
    yield site
    site.liar.clear()
    site.hub_liar.clear()


def publisher_round(node: Node, site: Site,
                    trusted: list[Ed25519PrivateKey] | None = None) -> ReleaseEvent | None:
    """One daemon round in publisher mode; the event it applied (None: nothing was proposed)."""
    keys = [k.public_key() for k in (trusted or [site.key])]

    async def run() -> ReleaseEvent | None:
        retry = RetryPolicy(attempts=2, deadline=4.0)
        async with HTTPPublisher(site.liar.url, keys, timeout=2.0, retry=retry) as publisher:
            event = await PublisherWatcher(publisher, CURRENT, 60).check()
        if event is None:
            return None
        upgrader = Upgrader(node.box.root, node.box.state, Flister(node.box.state),
                            node.supervisor(), probation=0.3, start_timeout=10.0, stop_timeout=2.0)
        await upgrader.install_from(PublisherSource(upgrader.flister.downloads_dir), event, "boot")
        return event

    return asyncio.run(run())


def refused(node: Node, site: Site, error: type[Exception], fragment: str,
            trusted: list[Ed25519PrivateKey] | None = None) -> None:
    before = fingerprint(node.box)
    try:
        publisher_round(node, site, trusted)
    except UpgradeFailed as failed:
        exc: BaseException | None = refusal_cause(failed)
    except ZosUpgradeError as caught:
        exc = caught
    else:
        raise AssertionError("the lie was believed: the release was applied")
    assert isinstance(exc, error), repr(exc)
    assert fragment in str(exc), str(exc)
    assert_node_unchanged(node, before)


def body(upgrade: Upgrade | dict[str, str]) -> str:
    return msgspec.json.encode(upgrade).decode()


@pytest.mark.parametrize(("path", "lie", "error", "fragment"), [
    pytest.param("/versions", {"body": "[1, 2]"}, InvalidAnswer, "wrong shape", id="versions-wrong-types"),
    pytest.param("/versions", {"body": '["1.0.0", "not-a-version"]'}, InvalidAnswer, "not-a-version",
                 id="versions-not-semver"),
    pytest.param("/latest", {"body": "<html>maintenance</html>", "content_type": "text/html"}, InvalidAnswer,
                 "not valid JSON", id="latest-html"),
    pytest.param("/latest", {"body": '"', "huge": 3 * 1024 * 1024}, ResponseTooLarge, "larger than",
                 id="latest-huge"),
    pytest.param("/latest", {"body": '"1.1', "truncate": 100}, NetworkError, "failed after 2 attempts",
                 id="latest-truncated"),
    pytest.param("/latest", {"body": '"1.1.0"', "delay": 5}, NetworkError, "failed after 2 attempts",
                 id="latest-slow"),
    pytest.param("/latest", {"body": '"7.0.0"'}, LatestNotListed, "versions does not list",
                 id="latest-not-listed"),
    pytest.param("/1.1.0", {"body": '{"flist": 12, "signature": []}'}, InvalidAnswer, "wrong shape",
                 id="release-wrong-types"),
    pytest.param("/1.1.0", {"body": '{"flist": "file:///etc/shadow"}'}, InvalidAnswer, "http(s) URL",
                 id="release-not-http"),
    pytest.param("/1.1.0", {"body": '{"flist": "http://x/', "truncate": 64}, NetworkError, "failed after",
                 id="release-truncated"),
])
def test_a_bad_publisher_answer_is_refused(node: Node, pub: Site, path: str, lie: dict[str, object],
                                           error: type[Exception], fragment: str) -> None:
    pub.liar.lie(path, **lie)
    refused(node, pub, error, fragment)


def test_an_unsigned_release_is_refused(node: Node, pub: Site) -> None:
    unsigned = {"flist": pub.flist_url["1.1.0"], "hash": pub.flist_hash["1.1.0"], "version": "1.1.0"}
    pub.liar.lie("/1.1.0", body=body(unsigned))
    refused(node, pub, UnsignedRelease, "carries no signature")


def test_a_release_without_a_hash_is_refused(node: Node, pub: Site) -> None:
    signed = msgspec.structs.replace(pub.signed("1.1.0"), hash="")
    pub.liar.lie("/1.1.0", body=body(signed))
    refused(node, pub, UnsignedRelease, "carries no flist hash")


def test_a_tampered_release_is_refused(node: Node, pub: Site) -> None:
    # a valid signature, but the flist URL was swapped for another release's
    tampered = msgspec.structs.replace(pub.signed("1.1.0"), flist=pub.flist_url["1.0.0"])
    pub.liar.lie("/1.1.0", body=body(tampered))
    refused(node, pub, BadSignature, "does not verify with key")


def test_a_release_signed_by_an_unknown_key_is_refused(node: Node, pub: Site) -> None:
    pub.liar.lie("/1.1.0", body=body(pub.signed("1.1.0", key=generate_key())))
    refused(node, pub, UnknownKey, "not among the 1 trusted key(s)")


def test_an_unknown_signer_that_does_not_name_its_key_is_refused(node: Node, pub: Site) -> None:
    anonymous = msgspec.structs.replace(pub.signed("1.1.0", key=generate_key()), key_id="")
    pub.liar.lie("/1.1.0", body=body(anonymous))
    refused(node, pub, BadSignature, "any of the 1 trusted key(s)")


def test_a_replayed_signature_of_another_version_is_refused(node: Node, pub: Site) -> None:
    # the genuine, signed object of 1.0.0 served as 1.1.0
    pub.liar.lie("/1.1.0", body=body(pub.signed("1.0.0")))
    refused(node, pub, ReplayedRelease, "is the release of 1.0.0")


def test_a_replay_with_the_version_field_stripped_is_refused(node: Node, pub: Site) -> None:
    replay = msgspec.structs.replace(pub.signed("1.0.0"), version="")
    pub.liar.lie("/1.1.0", body=body(replay))
    refused(node, pub, BadSignature, "does not verify")


def test_a_release_whose_signature_was_flipped_is_refused(node: Node, pub: Site) -> None:
    signed = pub.signed("1.1.0")
    flipped = ("0" if signed.signature[0] != "0" else "1") + signed.signature[1:]
    pub.liar.lie("/1.1.0", body=body(msgspec.structs.replace(signed, signature=flipped)))
    refused(node, pub, BadSignature, "does not verify")


def test_an_flist_swapped_in_transit_is_refused_by_its_signed_hash(node: Node, pub: Site) -> None:
    # the release object is genuine; the hub (or a CDN) serves the old release's bytes under its URL
    pub.hub_liar.lie(f"/{REPO_NAME}/zos:1.1.0.fl", **{"from": f"/{REPO_NAME}/zos:1.0.0.fl"})
    refused(node, pub, HashMismatch, "the release object pins")


@pytest.mark.parametrize("latest", ["0.9.0", "1.0.0"])
def test_a_latest_at_or_below_the_node_is_never_applied(node: Node, pub: Site, latest: str) -> None:
    pub.liar.lie("/versions", body=json.dumps(["0.9.0", "1.0.0", "1.1.0"]))
    pub.liar.lie("/latest", body=json.dumps(latest))
    before = fingerprint(node.box)
    assert publisher_round(node, pub) is None
    assert_node_unchanged(node, before)


def test_the_genuine_release_is_applied_after_all_the_lies(node: Node, pub: Site) -> None:
    # the control: the same round without a lie upgrades the node (so the refusals above were real)
    event = publisher_round(node, pub)
    assert event is not None and event.version == NEXT
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
