"""The hub's online keys: due timestamps re-signed (an injected clock, no sleeping), a targets-only
upload completed with snapshot + timestamp, and the lifespan task of a real hub process doing it."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata

from tests.support.hub import TOKEN_A, HubFactory
from zos_upgrade.errors import ConfigError
from zos_upgrade.hubserver.config import load_hub_config
from zos_upgrade.hubserver.tuf_online import OnlineSigner
from zos_upgrade.hubserver.tuf_store import TufStore
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.repository import TrustRepository

T0 = datetime(2030, 6, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def upload_all(store: TufStore, repo: TrustRepository, names: list[str]) -> None:
    for name in names:
        store.accept("alpha", name, (repo.metadata_dir / name).read_bytes())


def online_keys(repo_keys: Path, dest: Path, roles: tuple[str, ...]) -> Path:
    (dest / "alpha").mkdir(parents=True)
    for role in roles:
        for key in repo_keys.glob(f"{role}.*.pem"):
            shutil.copy(key, dest / "alpha" / key.name)
    return dest


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_due_timestamp_resigned_on_the_hub(tmp_path: Path, clock: Clock) -> None:
    repo = TrustRepository.init(tmp_path / "tf" / "metadata", KeyStore(tmp_path / "tf" / "keys"), now=clock)
    store = TufStore(tmp_path / "hub")
    upload_all(store, repo, ["1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"])
    keys = online_keys(tmp_path / "tf" / "keys", tmp_path / "online", ("timestamp",))
    signer = OnlineSigner(store, keys, now=clock)
    clock.now = T0 + timedelta(hours=1)
    assert signer.resign_due() == {}
    clock.now = T0 + timedelta(hours=20)  # within the 8 h renewal window of a 1-day timestamp
    assert signer.resign_due() == {"alpha": "timestamp v2"}
    ts = Metadata.from_file(str(store.metadata_dir("alpha") / "timestamp.json"))
    assert ts.signed.version == 2 and ts.signed.expires == clock.now + timedelta(days=1)
    assert signer.resign_due() == {}  # fresh again
    # what the hub wrote verifies as a whole, like any repository
    TrustRepository(store.metadata_dir("alpha"), KeyStore(keys / "alpha"), now=clock)
    # the engineer's next push still wins: its timestamp is made newer than the hub's
    repo.timestamp_only(at_least=3)
    upload_all(store, repo, ["timestamp.json"])


def test_targets_only_upload_gets_snapshot_and_timestamp(tmp_path: Path, clock: Clock) -> None:
    repo = TrustRepository.init(tmp_path / "tf" / "metadata", KeyStore(tmp_path / "tf" / "keys"), now=clock)
    store = TufStore(tmp_path / "hub")
    upload_all(store, repo, ["1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"])
    flist = tmp_path / "zos:1.0.0.flist"
    flist.write_bytes(b"release")
    repo.sign_flists([(flist.name, flist)])
    upload_all(store, repo, ["2.targets.json"])  # the offline key's work only
    keys = online_keys(tmp_path / "tf" / "keys", tmp_path / "online", ("timestamp", "snapshot"))
    assert OnlineSigner(store, keys, now=clock).resign_due() == {"alpha": "snapshot v2, timestamp v2"}
    served = TrustRepository(store.metadata_dir("alpha"), KeyStore(keys / "alpha"), now=clock)
    assert "zos:1.0.0.flist" in served.target_files()
    # without the targets key nothing online can add a target
    with pytest.raises(Exception, match="cannot sign targets"):
        served.sign_flists([(flist.name, flist)])


def test_online_keys_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    cfg = tmp_path / "hub.toml"
    cfg.write_text('online_keys = "keys"\nonline_resign_seconds = 60\n')
    config = load_hub_config(cfg, tmp_path / "root")
    assert config.online_keys == (tmp_path / "keys").resolve() and config.online_resign_seconds == 60
    cfg.write_text('online_keys = "missing"\n')
    with pytest.raises(ConfigError, match="not a folder"):
        load_hub_config(cfg, tmp_path / "root")
    cfg.write_text('online_keys = "keys"\nonline_resign_seconds = 0\n')
    with pytest.raises(ConfigError, match="online_resign_seconds"):
        load_hub_config(cfg, tmp_path / "root")


def test_hub_process_resigns_with_its_lifespan_task(tmp_path: Path, start_hub: HubFactory) -> None:
    from click.testing import CliRunner

    from zos_upgrade.cli import cli

    def run(*args: str | Path) -> None:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    # a repository whose timestamp expired a year ago: the hub's task must renew it at once
    past = datetime.now(UTC) - timedelta(days=365)
    TrustRepository.init(tmp_path / "tf" / "metadata", KeyStore(tmp_path / "tf" / "keys"), now=lambda: past)
    keys = online_keys(tmp_path / "tf" / "keys", tmp_path / "online", ("timestamp",))
    config = f'online_keys = "{keys}"\nonline_resign_seconds = 0.2\n[tokens]\n"{TOKEN_A}" = "alpha"\n'
    with start_hub(config=config) as hub:
        run(
            "trust", "push", "--dir", tmp_path / "tf", "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A
        )
        deadline = time.monotonic() + 20
        version = 1
        while version < 2 and time.monotonic() < deadline:
            version = httpx.get(f"{hub.url}/tuf/alpha/metadata/timestamp.json").json()["signed"]["version"]
            time.sleep(0.1)
        assert version >= 2


def test_push_after_the_hub_signed_a_snapshot_moves_past_it(tmp_path: Path, start_hub: HubFactory) -> None:
    from click.testing import CliRunner

    from zos_upgrade.cli import cli

    def run(*args: str | Path) -> tuple[int, str]:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        return result.exit_code, result.output

    tf = tmp_path / "tf"
    # our snapshots live 3 days, the hub's 7: the two signers' snapshot 2 cannot be the same bytes
    assert run("trust", "init", "--dir", tf, "--expires", "snapshot=3")[0] == 0
    keys = online_keys(tf / "keys", tmp_path / "online", ("timestamp", "snapshot"))
    config = f'online_keys = "{keys}"\nonline_resign_seconds = 0.2\n[tokens]\n"{TOKEN_A}" = "alpha"\n'
    with start_hub(config=config) as hub:
        push = ("trust", "push", "--dir", tf, "--url", hub.url, "--repo", "alpha", "--token", TOKEN_A)
        assert run(*push)[0] == 0
        flist = tmp_path / "zos:1.0.0.flist"
        flist.write_bytes(b"release")
        assert run("trust", "sign", "--dir", tf, flist)[0] == 0
        answer = httpx.put(
            f"{hub.url}/tuf/alpha/metadata/2.targets.json",
            content=(tf / "metadata" / "2.targets.json").read_bytes(),
            headers={"Authorization": f"bearer {TOKEN_A}"},
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the hub's task signs snapshot 2 and timestamp 2
            if httpx.get(f"{hub.url}/tuf/alpha/metadata/2.snapshot.json").status_code == 200:
                break
            time.sleep(0.1)
        code, out = run(*push)
        assert code == 1 and "differs from ours" in out
        assert run("trust", "sign", "--dir", tf, "--renew", "snapshot")[0] == 0
        code, out = run(*push)
        assert code == 0 and "3.snapshot.json" in out, out
        served = httpx.get(f"{hub.url}/tuf/alpha/metadata/timestamp.json").json()["signed"]
        assert served["meta"]["snapshot.json"]["version"] == 3
