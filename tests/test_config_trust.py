"""`[trust]` of the node's config (issue 15): a pinned root, or an explicit and loud `insecure`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import REPO, zos_upgrade_cmd
from tests.support.tuf_repo import TufTestRepo
from zos_upgrade.config import TrustRequired, parse_config
from zos_upgrade.errors import ConfigError

BASE = """
[node]
root = "{root}"
state_dir = "/state"
[source]
hub = "http://127.0.0.1:9"
flist = "tf-zos/zos:latest.fl"
{source}
[trust]
{trust}
"""


def config(root: Path, trust: str, source: str = "") -> str:
    return BASE.format(root=root, trust=trust, source=source)


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    """A node whose /etc/zos-upgrade/trust/tf-zos.root.json is a real TUF root."""
    repo = TufTestRepo(tmp_path / "repo")
    path = tmp_path / "etc/zos-upgrade/trust/tf-zos.root.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(repo.file("1.root.json"))
    return path


def test_a_pinned_root_is_accepted_and_reserved(tmp_path: Path, pinned: Path) -> None:
    cfg = parse_config(config(tmp_path, 'root = "/etc/zos-upgrade/trust/tf-zos.root.json"'))
    assert cfg.tuf and not cfg.unauthenticated
    assert cfg.node_path(cfg.trust.root or "") == pinned
    assert cfg.reserved_paths()["/etc/zos-upgrade/trust/tf-zos.root.json"] == "a pinned TUF root"
    assert cfg.trust_dir == tmp_path / "state/trust"


def test_insecure_is_explicit(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path, "insecure = true"))
    assert cfg.unauthenticated and not cfg.tuf
    with pytest.raises(TrustRequired, match=r"without any release authenticity: set \[trust\] root"):
        parse_config(config(tmp_path, ""))


@pytest.mark.parametrize(("trust", "source", "message"), [
    ('root = "/etc/zos-upgrade/trust/tf-zos.root.json"\ninsecure = true', "", "choose one"),
    ('root = "/etc/none.json"', "", "cannot be read"),
    ('root = "etc/zos-upgrade/trust/tf-zos.root.json"', "", "must be an absolute path"),
    ('root = "/etc/../x.json"', "", "must not contain '..'"),
    ('root = "/etc/zos-upgrade/trust/tf-zos.root.json"\nmetadata_url = "ftp://cdn"', "", "not an http"),
    ('insecure = true\nmetadata_url = "https://cdn/tuf/"', "", "needs \\[trust\\] root"),
    ('root = "/etc/zos-upgrade/trust/tf-zos.root.json"', 'bins_repo = "tf-zos-bins"',
     "needs trust.bins_root"),
    ('root = "/etc/zos-upgrade/trust/tf-zos.root.json"\n'
     'bins_root = "/etc/zos-upgrade/trust/tf-zos.root.json"', "", "bins_repo, which is not set"),
    ('insecure = true\nbins_root = "/etc/zos-upgrade/trust/tf-zos.root.json"', 'bins_repo = "b"',
     "choose one"),
    ('roots = "/x"', "", "unknown field `roots`"),
    ("insecure = 1", "", "Expected `bool`"),
])
def test_bad_trust_sections_are_refused(tmp_path: Path, pinned: Path, trust: str, source: str,
                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config(tmp_path, trust, source))


def test_a_pinned_root_that_is_not_a_root(tmp_path: Path, pinned: Path) -> None:
    doc = json.loads(pinned.read_text())
    doc["signed"]["_type"] = "timestamp"
    pinned.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="is not a TUF root metadata file"):
        parse_config(config(tmp_path, 'root = "/etc/zos-upgrade/trust/tf-zos.root.json"'))
    pinned.write_text("garbage")
    with pytest.raises(ConfigError, match="is not a TUF root metadata file"):
        parse_config(config(tmp_path, 'root = "/etc/zos-upgrade/trust/tf-zos.root.json"'))


def test_the_daemon_refuses_to_start_without_trust_and_warns_when_insecure(tmp_path: Path) -> None:
    path = tmp_path / "zu.toml"
    path.write_text(config(tmp_path, ""))
    proc = subprocess.run(zos_upgrade_cmd("daemon", "--config", str(path), "--once"), capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "TrustRequired" in proc.stderr and "insecure = true" in proc.stderr
    assert not (tmp_path / "state").exists()
    path.write_text(config(tmp_path, "insecure = true") + "[supervisor]\nkind = \"supervisord\"\n"
                    "socket = \"/sup.sock\"\ninclude_dir = \"/conf.d\"\n")
    proc = subprocess.run(zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(path), "--once"),
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert "UNAUTHENTICATED" in proc.stderr + proc.stdout, proc.stderr
    shown = subprocess.run(zos_upgrade_cmd("status", "--config", str(path), "--json"), capture_output=True,
                           text=True, timeout=60, cwd=REPO, check=True)
    assert json.loads(shown.stdout)["trust"]["mode"] == "unauthenticated"
