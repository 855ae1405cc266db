"""`release ls`, and the whole release side driven through the real command: keygen, add, serve, fetch."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from tests.publisher.conftest import Site
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from zos_upgrade.cli import cli
from zos_upgrade.publisher import HTTPPublisher
from zos_upgrade.publisher.signing import generate_key, load_public_key, public_key_pem
from zos_upgrade.versions import parse_version


def write_pub(path: Path, site: Site | None = None) -> Path:
    key = site.key if site is not None else generate_key()
    path.write_bytes(public_key_pem(key.public_key()))
    return path


def ls(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["release", "ls", *args])
    return result.exit_code, result.stdout


def test_ls_lists_versions_and_marks_latest(site: Site, release_url: str) -> None:
    for source in (["--root", str(site.tree)], ["--url", release_url]):
        code, output = ls(*source)
        assert code == 0, output
        assert output.splitlines() == ["0.1.0", "0.2.0", "1.0.0  (latest)"]


def test_ls_with_the_right_key_verifies_every_release(site: Site, release_url: str, tmp_path: Path) -> None:
    pub = write_pub(tmp_path / "signer.pub", site)
    for source in (["--root", str(site.tree)], ["--url", release_url]):
        code, output = ls(*source, "--key", str(pub))
        assert code == 0, output
        assert output.count("signature ok") == 3 and "1.0.0  (latest)  signature ok" in output


def test_ls_with_another_key_says_which_fail_and_exits_1(
    site: Site, release_url: str, tmp_path: Path
) -> None:
    stranger = write_pub(tmp_path / "stranger.pub")
    for source in (["--root", str(site.tree)], ["--url", release_url]):
        code, output = ls(*source, "--key", str(stranger))
        assert code == 1
        assert [line.split()[0] for line in output.splitlines() if "FAILED UnknownKey" in line] == [
            "0.1.0", "0.2.0", "1.0.0"
        ]


def test_ls_names_the_one_tampered_release(site: Site, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("versions", "latest", "0.1.0", "0.2.0", "1.0.0"):
        tree.joinpath(name).write_bytes(site.tree.joinpath(name).read_bytes())
    obj = json.loads(tree.joinpath("0.2.0").read_text())
    tree.joinpath("0.2.0").write_text(json.dumps({**obj, "flist": "https://evil.example/x.fl"}))
    tree.joinpath("latest").write_text('"2.0.0"')
    code, output = ls("--root", str(tree), "--key", str(write_pub(tmp_path / "k.pub", site)))
    assert code == 1
    assert "0.2.0  FAILED BadSignature" in output and "0.1.0  signature ok" in output
    assert "FAILED LatestNotListed" in output and "latest is 2.0.0, which versions does not list" in output


def test_ls_needs_exactly_one_source(site: Site) -> None:
    assert ls()[0] == 2
    assert ls("--root", str(site.tree), "--url", "http://127.0.0.1:1")[0] == 2


def test_keygen_add_serve_and_a_publisher_talk_over_loopback(tmp_path: Path) -> None:
    """Every step through the real `zos-upgrade` command, the server a child process."""

    def cli_run(*args: str) -> str:
        proc = subprocess.run(zos_upgrade_cmd("release", *args), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    flist = tmp_path / "zos-1.2.0.fl"
    flist.write_bytes(b"flist bytes" * 50)
    cli_run("keygen", "--out", str(tmp_path / "signer"))
    tree = str(tmp_path / "tree")
    cli_run("add", "1.2.0", "--flist", "https://hub.example/zos/zos-1.2.0.fl", "--flist-file", str(flist),
            "--key", str(tmp_path / "signer.key"), "--root", tree, "--transaction-id", "t-1")
    port = free_port()
    with serving(zos_upgrade_cmd("release", "serve", "--root", tree, "--port", str(port)), port):

        async def ask() -> None:
            trusted = [load_public_key(tmp_path / "signer.pub")]
            async with HTTPPublisher(f"http://127.0.0.1:{port}", trusted) as publisher:
                latest = await publisher.latest()
                assert latest == parse_version("1.2.0")
                upgrade = await publisher.get(latest)
                assert upgrade.transaction_id == "t-1"
                assert upgrade.flist == "https://hub.example/zos/zos-1.2.0.fl"

        asyncio.run(ask())
