"""Where each back-end takes its service configs from: what the upgrader asks instead of its type."""

from __future__ import annotations

import os
from pathlib import Path

from zos_upgrade.supervisor import Supervisor
from zos_upgrade.supervisor.supervisord import SupervisordClient
from zos_upgrade.supervisor.zinit import ZinitClient


def test_zinit_reads_the_yaml_files_of_the_node_it_runs_on(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "etc" / "zinit").mkdir(parents=True)
    zinit: Supervisor = ZinitClient(tmp_path / "zinit.sock", root=root)
    assert zinit.reads_configs_from(root / "etc" / "zinit")
    # the same directory by another path is still the one it reads
    os.symlink(root, tmp_path / "alias")
    assert zinit.reads_configs_from(tmp_path / "alias" / "etc" / "zinit")
    # another node's (or a sandbox's) etc/zinit is not
    assert not zinit.reads_configs_from(tmp_path / "other" / "etc" / "zinit")
    assert not ZinitClient(tmp_path / "zinit.sock").reads_configs_from(root / "etc" / "zinit")


def test_supervisord_never_reads_the_yaml_its_configs_are_rendered_from(tmp_path: Path) -> None:
    include = tmp_path / "node" / "etc" / "zinit"
    include.mkdir(parents=True)
    supervisord: Supervisor = SupervisordClient(tmp_path / "sd.sock", include_dir=include)
    # even an include dir that is the release's service dir holds rendered [program:x] files
    assert not supervisord.reads_configs_from(include)
    assert not supervisord.reads_configs_from(tmp_path / "node")
