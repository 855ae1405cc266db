"""Decoding the three release documents: every malformed answer is an ``InvalidAnswer`` saying where."""

from __future__ import annotations

import pytest

from zos_upgrade.publisher.base import (
    DuplicateVersions,
    InvalidAnswer,
    decode_latest,
    decode_upgrade,
    decode_versions,
)
from zos_upgrade.versions import parse_version

WHERE = "http://releases.example/versions"


def test_versions_decode_sorted_by_semver() -> None:
    got = decode_versions(b'["0.10.0", "0.9.0", "1.0.0-rc.1", "1.0.0", "0.2.0-alpha"]', WHERE)
    assert [str(v) for v in got] == ["0.2.0-alpha", "0.9.0", "0.10.0", "1.0.0-rc.1", "1.0.0"]
    assert decode_versions(b"[]", WHERE) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'["0.1.0",', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"42", "wrong shape"),
        (b'{"versions": []}', "wrong shape"),
        (b'["0.1.0", 2]', "wrong shape"),
        (b'["0.1.0", "v0.2.0"]', "'v0.2.0' is not a semver"),
        (b'["1.0"]', "'1.0' is not a semver"),
        (b'["latest"]', "not a semver"),
    ],
)
def test_bad_versions_documents_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidAnswer, match=message) as caught:
        decode_versions(body, WHERE)
    assert WHERE in str(caught.value)


@pytest.mark.parametrize("body", [b'["1.0.0", "0.1.0", "1.0.0"]', b'["1.0.0+a", "1.0.0+b"]'])
def test_duplicate_versions_are_refused(body: bytes) -> None:
    with pytest.raises(DuplicateVersions, match="more than once"):
        decode_versions(body, WHERE)


def test_latest_is_one_semver_string() -> None:
    assert decode_latest(b'"1.2.3-rc.1"', WHERE) == parse_version("1.2.3-rc.1")
    for body, message in [(b"1", "wrong shape"), (b'["1.0.0"]', "wrong shape"), (b'"v1"', "not a semver"),
                          (b"", "not valid JSON")]:
        with pytest.raises(InvalidAnswer, match=message):
            decode_latest(body, WHERE)


def test_release_object_decodes_and_tolerates_unknown_fields() -> None:
    upgrade = decode_upgrade(
        b'{"flist": "https://hub/x.fl", "transaction_id": "", "signature": "ab", "future": 1}', WHERE
    )
    assert upgrade.flist == "https://hub/x.fl" and upgrade.signature == "ab" and upgrade.hash == ""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"transaction_id": ""}', "wrong shape"),
        (b'{"flist": 5}', "wrong shape"),
        (b'{"flist": "https://hub/x.fl", "signature": null}', "wrong shape"),
        (b'"https://hub/x.fl"', "wrong shape"),
        (b'{"flist": "file:///etc/passwd"}', "http\\(s\\) URL"),
        (b'{"flist": "x.fl"}', "http\\(s\\) URL"),
        (b'{"flist": "https://hub/x.fl", "hash": "ABC"}', "64 lowercase hex"),
        (b'{"flist": "https://hub/x.fl", "version": "one"}', "field 'version'"),
        (b'{"flist": "https://hub/x.fl", "signature": "' + b"a" * 5000 + b'"}', "longer than"),
    ],
)
def test_bad_release_objects_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidAnswer, match=message):
        decode_upgrade(body, WHERE)
