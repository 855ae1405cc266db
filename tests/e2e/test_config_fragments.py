"""Config fragments end to end: the daemon (a child process, real hub, real supervisord) follows what a
fragment sets, `status --show-config` names that fragment, and a bad fragment stops both before anything
changes."""

from __future__ import annotations

import json
import subprocess

from tests.e2e.daemon_node import LINK, Node
from tests.support.procs import REPO, zos_upgrade_cmd
from zos_upgrade.configd import fragment_dir


def _status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zos_upgrade_cmd("status", *args), capture_output=True, text=True, timeout=30,
                          check=False, cwd=REPO)


def test_daemon_follows_the_link_a_fragment_sets_and_refuses_a_bad_one(node: Node) -> None:
    # the main file follows a link that does not exist; the fragment points it at the real one
    node.config.write_text(node.config.read_text().replace(f'flist = "{LINK}"', 'flist = "nobody/none.fl"'))
    folder = fragment_dir(node.config)
    folder.mkdir()
    (folder / "10-link.toml").write_text(f'[source]\nflist = "{LINK}"\n')
    node.release("1.0.0")
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert node.status()["current_version"] == "1.0.0"

    shown = _status("--config", str(node.config), "--show-config", "--json")
    assert shown.returncode == 0, shown.stderr
    keys = json.loads(shown.stdout)["keys"]
    assert keys["source.flist"] == {"value": LINK, "origin": str(folder / "10-link.toml")}
    assert keys["node.root"]["origin"] == str(node.config)

    # a later fragment with a misspelt key: both commands refuse it by name, the node is untouched
    (folder / "20-typo.toml").write_text("[upgrade]\nprobaton = 5\n")
    node.release("1.1.0")
    before = (node.state / "status.json").read_bytes()
    proc = node.once()
    assert proc.returncode == 1
    assert f"{folder / '20-typo.toml'}: Object contains unknown field `probaton`" in proc.stderr
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert (node.state / "status.json").read_bytes() == before
    refused = _status("--config", str(node.config))
    assert refused.returncode == 1 and str(folder / "20-typo.toml") in refused.stderr
