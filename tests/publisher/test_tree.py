"""`release keygen` and `release add`: what they write, and that a refused add changes nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from zos_upgrade.cli import cli
from zos_upgrade.publisher.base import PublisherError, ReleaseExists
from zos_upgrade.publisher.signing import TrustedKeys, file_hash, generate_key, load_public_key
from zos_upgrade.publisher.tree import ReleaseTree
from zos_upgrade.versions import InvalidVersion, parse_version

URL = "https://hub.example/app/app.fl"


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and mtime: equal snapshots mean nothing was touched."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def flist(tmp_path: Path) -> Path:
    path = tmp_path / "app.fl"
    path.write_bytes(b"an flist" * 1000)
    return path


def test_keygen_writes_a_private_pem_0600_and_a_public_pem(tmp_path: Path) -> None:
    prefix = tmp_path / "signer"
    result = CliRunner().invoke(cli, ["release", "keygen", "--out", str(prefix)])
    assert result.exit_code == 0, result.output
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert load_public_key(public) is not None


def test_keygen_refuses_to_overwrite_either_file(tmp_path: Path) -> None:
    prefix = tmp_path / "signer"
    Path(f"{prefix}.pub").write_bytes(b"precious")
    result = CliRunner().invoke(cli, ["release", "keygen", "--out", str(prefix)])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert Path(f"{prefix}.pub").read_bytes() == b"precious" and not Path(f"{prefix}.key").exists()


def test_add_signs_and_rewrites_versions_and_latest_in_semver_order(tmp_path: Path, flist: Path) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")  # created on first add
    for version in ["0.9.0", "0.10.0", "1.0.0-rc.1", "0.2.0"]:
        tree.add(version, flist_url=URL, flist_file=flist, key=key, transaction_id=f"tx-{version}")
    assert json.loads((tree.root / "versions").read_text()) == ["0.2.0", "0.9.0", "0.10.0", "1.0.0-rc.1"]
    assert json.loads((tree.root / "latest").read_text()) == "1.0.0-rc.1"
    stored = tree.get(parse_version("0.10.0"))
    assert stored.hash == file_hash(flist) and stored.transaction_id == "tx-0.10.0"
    TrustedKeys([key.public_key()]).verify(stored, parse_version("0.10.0"), "t")
    # adding an older version keeps the newest as latest
    tree.add("0.1.0", flist_url=URL, flist_file=flist, key=key)
    assert tree.latest() == parse_version("1.0.0-rc.1")


def test_add_through_the_cli(tmp_path: Path, flist: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["release", "keygen", "--out", str(tmp_path / "k")]).exit_code == 0
    result = runner.invoke(cli, ["release", "add", "1.2.3", "--flist", URL, "--flist-file", str(flist),
                                 "--key", str(tmp_path / "k.key"), "--root", str(tmp_path / "tree")])
    assert result.exit_code == 0, result.output
    assert f"hash {file_hash(flist)}" in result.output
    assert ReleaseTree(tmp_path / "tree").versions() == [parse_version("1.2.3")]


@pytest.mark.parametrize(
    ("version", "flist_url", "error", "message"),
    [
        ("1.0.0", URL, ReleaseExists, "already published"),
        ("1.0.0+build.7", URL, ReleaseExists, "already published"),  # same precedence as 1.0.0
        ("v2.0.0", URL, InvalidVersion, "not a semver"),
        ("2.0", URL, InvalidVersion, "not a semver"),
        ("latest", URL, InvalidVersion, "not a semver"),
        ("../2.0.0", URL, InvalidVersion, "not a semver"),
        ("2.0.0", "file:///etc/passwd", PublisherError, "http\\(s\\) URL"),
    ],
)
def test_a_refused_add_changes_nothing(
    tmp_path: Path, flist: Path, version: str, flist_url: str, error: type[Exception], message: str
) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")
    tree.add("1.0.0", flist_url=URL, flist_file=flist, key=key)
    before = snapshot(tree.root)
    with pytest.raises(error, match=message):
        tree.add(version, flist_url=flist_url, flist_file=flist, key=key)
    assert snapshot(tree.root) == before


def test_add_refuses_a_missing_flist_a_garbled_tree_and_a_stray_object(tmp_path: Path, flist: Path) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")
    tree.add("1.0.0", flist_url=URL, flist_file=flist, key=key)
    before = snapshot(tree.root)
    with pytest.raises(PublisherError, match="does not exist"):
        tree.add("2.0.0", flist_url=URL, flist_file=tmp_path / "nope.fl", key=key)
    assert snapshot(tree.root) == before

    (tree.root / "2.0.0").write_text("{}")  # left by hand, or by a crash of another tool
    before = snapshot(tree.root)
    with pytest.raises(ReleaseExists, match="does not list it"):
        tree.add("2.0.0", flist_url=URL, flist_file=flist, key=key)
    assert snapshot(tree.root) == before

    for name, garbage in [("versions", b'["1.0.0", "1.0.0"]'), ("versions", b"42"), ("latest", b"[")]:
        tree.root.joinpath(name).write_bytes(garbage)
        before = snapshot(tree.root)
        with pytest.raises(PublisherError, match=name):
            tree.add("3.0.0", flist_url=URL, flist_file=flist, key=key)
        assert snapshot(tree.root) == before
        tree.root.joinpath(name).write_bytes(b'["1.0.0"]' if name == "versions" else b'"1.0.0"')


def test_refused_cli_add_exits_1_and_says_why(tmp_path: Path, flist: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["release", "keygen", "--out", str(tmp_path / "k")])
    args = ["--flist", URL, "--flist-file", str(flist), "--key", str(tmp_path / "k.key"),
            "--root", str(tmp_path / "tree")]
    assert runner.invoke(cli, ["release", "add", "1.0.0", *args]).exit_code == 0
    result = runner.invoke(cli, ["release", "add", "1.0.0", *args])
    assert result.exit_code == 1 and "ReleaseExists" in result.output
    result = runner.invoke(cli, ["release", "add", "one", *args])
    assert result.exit_code == 1 and "InvalidVersion" in result.output
    result = runner.invoke(cli, ["release", "add", "2.0.0", *args[:4], "--key", str(tmp_path / "k.pub"),
                                 "--root", str(tmp_path / "tree")])
    assert result.exit_code == 1 and "InvalidKey" in result.output


def test_withdraw_takes_a_version_off_the_offer_and_moves_latest_back(tmp_path: Path, flist: Path) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")
    for version in ["1.0.0", "1.1.0", "1.2.0"]:
        tree.add(version, flist_url=URL, flist_file=flist, key=key)
    assert tree.withdraw("1.1.0") == parse_version("1.2.0")  # not latest: latest stays
    assert tree.versions() == [parse_version("1.0.0"), parse_version("1.2.0")]
    assert tree.latest() == parse_version("1.2.0")
    assert tree.withdraw("1.2.0") == parse_version("1.0.0")  # latest: moves back to the newest left
    assert json.loads((tree.root / "versions").read_text()) == ["1.0.0"]
    assert json.loads((tree.root / "latest").read_text()) == "1.0.0"
    # the signed objects stay, so a withdrawn version can never come back with another flist
    assert tree.get(parse_version("1.2.0")).version == "1.2.0"
    with pytest.raises(ReleaseExists, match="does not list it"):
        tree.add("1.2.0", flist_url=URL, flist_file=flist, key=key)
    tree.add("1.2.1", flist_url=URL, flist_file=flist, key=key)
    assert tree.latest() == parse_version("1.2.1")


@pytest.mark.parametrize(
    ("version", "error", "message"),
    [
        ("1.5.0", PublisherError, r"1\.5\.0 is not listed in versions; listed: 1\.0\.0, 2\.0\.0"),
        ("v2.0.0", InvalidVersion, "not a semver"),
        ("../1.0.0", InvalidVersion, "not a semver"),
    ],
)
def test_a_refused_withdraw_changes_nothing(
    tmp_path: Path, flist: Path, version: str, error: type[Exception], message: str
) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")
    tree.add("1.0.0", flist_url=URL, flist_file=flist, key=key)
    tree.add("2.0.0", flist_url=URL, flist_file=flist, key=key)
    before = snapshot(tree.root)
    with pytest.raises(error, match=message):
        tree.withdraw(version)
    assert snapshot(tree.root) == before


def test_withdraw_refuses_the_last_version_and_a_garbled_tree(tmp_path: Path, flist: Path) -> None:
    tree = ReleaseTree(tmp_path / "tree")
    with pytest.raises(PublisherError, match="not a directory"):
        tree.withdraw("1.0.0")
    tree.add("1.0.0", flist_url=URL, flist_file=flist, key=generate_key())
    before = snapshot(tree.root)
    with pytest.raises(PublisherError, match="only listed version"):
        tree.withdraw("1.0.0")
    assert snapshot(tree.root) == before
    tree.root.joinpath("latest").write_bytes(b"[")
    before = snapshot(tree.root)
    with pytest.raises(PublisherError, match="latest"):
        tree.withdraw("1.0.0")
    assert snapshot(tree.root) == before


def test_withdraw_through_the_cli(tmp_path: Path, flist: Path) -> None:
    key = generate_key()
    tree = ReleaseTree(tmp_path / "tree")
    tree.add("1.0.0", flist_url=URL, flist_file=flist, key=key)
    tree.add("1.1.0", flist_url=URL, flist_file=flist, key=key)
    runner = CliRunner()
    result = runner.invoke(cli, ["release", "withdraw", "1.1.0", "--root", str(tree.root)])
    assert result.exit_code == 0, result.output
    assert "withdrew 1.1.0; latest is 1.0.0" in result.output
    result = runner.invoke(cli, ["release", "withdraw", "1.1.0", "--root", str(tree.root)])
    assert result.exit_code == 1 and "not listed" in result.output
    assert runner.invoke(cli, ["release", "withdraw", "--root", str(tree.root)]).exit_code == 2
