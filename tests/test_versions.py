from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zos_upgrade.versions import (
    ZERO,
    InvalidVersion,
    Version,
    parse_version,
    try_version_from_name,
    version_from_name,
)

_ident = st.from_regex(r"\A(0|[1-9][0-9]{0,3}|[0-9]*[A-Za-z-][0-9A-Za-z-]{0,6})\Z")
_build = st.from_regex(r"\A[0-9A-Za-z-]{1,6}\Z")
versions = st.builds(
    Version,
    major=st.integers(0, 10**6),
    minor=st.integers(0, 10**6),
    patch=st.integers(0, 10**6),
    prerelease=st.none() | st.lists(_ident, min_size=1, max_size=3).map(".".join),
    build=st.none() | st.lists(_build, min_size=1, max_size=3).map(".".join),
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("zos:development:v0.2.0.flist", "0.2.0"),
        ("zos:1.2.3-rc1.fl", "1.2.3-rc1"),
        ("zos:200415.160341.0-dev.flist", "200415.160341.0-dev"),
        ("tf-zos/zos:production:v3.4.5.flist", "3.4.5"),
        ("1.0.0.flist", "1.0.0"),
        ("zos:v1.0.0+build.7.flist", "1.0.0+build.7"),
    ],
)
def test_version_from_known_names(name: str, expected: str) -> None:
    assert str(version_from_name(name)) == expected


@given(versions, st.sampled_from(["zos:", "zos:production:", "app:dev:", ""]), st.booleans(),
       st.sampled_from([".flist", ".fl"]))
def test_every_semver_survives_a_name_round_trip(v: Version, prefix: str, vee: bool, suffix: str) -> None:
    name = f"{prefix}{'v' if vee else ''}{v}{suffix}"
    assert version_from_name(name) == v
    assert parse_version(str(v)) == v


@pytest.mark.parametrize(
    "name",
    ["", "zos:latest.flist", "zos:1.2.flist", "zos:01.2.3.flist", "zos:1.2.3.4.flist", "zos:v.flist",
     "zos:1.2.3-.flist", "zos:\x00.flist", "x" * 1000],
)
def test_garbage_names_raise_invalid_version(name: str) -> None:
    with pytest.raises(InvalidVersion, match="carries no"):
        version_from_name(name)
    assert try_version_from_name(name) == ZERO


@given(st.text(max_size=40).filter(lambda s: not any(c.isdigit() for c in s)))
def test_names_without_digits_never_parse(name: str) -> None:
    with pytest.raises(InvalidVersion):
        version_from_name(name)


def test_invalid_version_is_a_value_error_with_the_input_in_the_message() -> None:
    with pytest.raises(ValueError, match=r"'1\.2'"):
        parse_version("1.2")


def test_precedence_is_semver() -> None:
    assert parse_version("1.0.0-rc.1") < parse_version("1.0.0") < parse_version("1.0.1")
    assert parse_version("1.0.0+a") == parse_version("1.0.0+b")  # build metadata has no precedence
