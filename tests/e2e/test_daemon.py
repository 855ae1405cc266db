"""`zos-upgrade daemon` end to end: a sandbox node, a real hub server, a real supervisord, the daemon
as a child process reading its TOML config, checked from outside (services, files, status.json)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from typing import Any

from tests.e2e.daemon_node import LINK, Node, clean_env, wait_for
from tests.support.node import BINS_REPO, REPO_NAME, Exe, service_release, tree_digest
from tests.support.procs import REPO, free_port, serving, stop_process, zos_upgrade_cmd
from zos_upgrade.publisher import ReleaseTree
from zos_upgrade.publisher.signing import generate_key, public_key_pem


def _killed_mid_apply(node: Node) -> None:
    """One daemon run killed (SIGKILL) in the middle of applying the release: the journal stays."""
    crash = subprocess.run(
        zos_upgrade_cmd("--log-format", "json", "daemon", "--config", str(node.config), "--once"),
        capture_output=True, text=True, timeout=90, check=False, cwd=REPO,
        env={**clean_env(), "ZOS_UPGRADE_CRASH_AT": "mid-apply"})
    assert crash.returncode == -signal.SIGKILL, crash.stderr


def _recover_from_backup(node: Node) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zos_upgrade_cmd("recover", "--from-backup", "--config", str(node.config)),
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO, env=clean_env())


def test_once_first_install_then_upgrade(node: Node) -> None:
    node.release("1.0.0")
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"
    assert node.box.wait_version("beta", "1.0.0") == "1.0.0"
    assert (node.root / "tmp/flist.name").read_text() == LINK
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
    status = node.status()
    assert status["last_result"] == "upgraded" and status["current_version"] == "1.0.0"

    node.release("1.1.0", extra={"opt/app/new.txt": "new"})
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    assert (node.root / "opt/app/new.txt").read_text() == "new"
    status = node.status()
    assert status["current_version"] == "1.1.0" and status["last_upgrade"]["from"] == "1.0.0"

    proc = node.once()  # nothing new: exit 0, nothing changes
    assert proc.returncode == 0, proc.stderr
    assert node.status()["last_result"] == "up-to-date"

    # a reboot wiped /tmp: the boot files come back from the manifests, nothing is reinstalled
    for name in ("flist.name", "flist.info"):
        (node.root / "tmp" / name).unlink()
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert "transaction starts" not in proc.stderr
    assert (node.root / "tmp/flist.name").read_text() == LINK
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.1.0.fl"
    assert node.status()["current_version"] == "1.1.0"


def test_crashed_daemon_is_recovered_by_the_next_start(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", extra={"opt/app/new.txt": "new"})
    _killed_mid_apply(node)
    assert (node.state / "journal.json").exists()
    proc = node.once()  # recovers (rolls back), then the unconfirmed 1.1.0 is applied again
    assert proc.returncode == 0, proc.stderr
    assert "unfinished transaction recovered" in proc.stderr
    assert not (node.state / "journal.json").exists()
    assert node.status()["current_version"] == "1.1.0"
    assert (node.root / "opt/app/new.txt").read_text() == "new"
    assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"


def test_once_failing_release_exits_1_rolled_back_and_says_so(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.box.wait_version("beta", "1.0.0")
    before = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    node.release("1.1.0", crash=("beta",), extra={"opt/app/new.txt": "new"})
    proc = node.once()
    assert proc.returncode == 1, proc.stderr
    status = node.status()
    assert status["last_result"] == "rolled-back" and status["current_version"] == "1.0.0"
    assert "beta" in status["last_error"] and "probation" in status["last_error"]
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == before
    assert json.loads((node.root / "tmp/flist.info").read_text())["target"] == "zos:1.0.0.fl"
    assert node.box.wait_version("beta", "1.0.0") == "1.0.0"  # the old release's services run again


def test_second_daemon_refused_then_sigterm_stops_the_first(node: Node) -> None:
    node.release("1.0.0")
    first = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.0.0", what="the first daemon to install")
        second = node.once()
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "daemon.lock" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    finally:
        stop_process(first)


def test_running_daemon_follows_the_link_and_sigterm_mid_transaction_finishes_it(node: Node) -> None:
    node.release("1.0.0")
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["current_version"] == "1.0.0", what="first install")
        # a long probation so SIGTERM surely lands inside the transaction
        node.config.write_text(node.config.read_text().replace("probation = 0.3", "probation = 3"))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        daemon = node.start()
        time.sleep(0.5)
        node.release("1.1.0")
        journal = node.state / "journal.json"
        wait_for(journal.exists, what="the transaction to start")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        # the transaction was finished, not cut: committed, no journal, status says so
        assert not journal.exists()
        status = node.status()
        assert status["current_version"] == "1.1.0" and status["last_result"] == "upgraded"
        assert node.box.wait_version("alpha", "1.1.0") == "1.1.0"
    finally:
        stop_process(daemon)


def test_bins_installed_and_uninstalled_by_diff(node: Node) -> None:
    node.release("1.0.0")
    node.write_config(source=f'hub = "{node.box.hub_url}"\nflist = "{LINK}"\nbins_repo = "{BINS_REPO}"\n')
    node.box.pack("tool:1.0.fl", {"usr/bin/tool": "#!/bin/sh\necho tool\n"}, repo=BINS_REPO)
    node.box.pack("other:2.0.fl", {"usr/bin/other": "other"}, repo=BINS_REPO)
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert (node.root / "usr/bin/tool").read_text().endswith("echo tool\n")
    assert (node.root / "usr/bin/other").read_text() == "other"
    bins = json.loads((node.root / "tmp/bins.info").read_text())
    assert set(bins) == {f"{BINS_REPO}/tool:1.0.fl", f"{BINS_REPO}/other:2.0.fl"}

    (node.box.hub_root / BINS_REPO / "other:2.0.fl").unlink()  # gone from the hub: uninstalled
    time.sleep(2.1)  # the hub caches folder scans within its timestamp granularity
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert not (node.root / "usr/bin/other").exists()
    assert (node.root / "usr/bin/tool").exists()
    assert set(json.loads((node.root / "tmp/bins.info").read_text())) == {f"{BINS_REPO}/tool:1.0.fl"}


def test_publisher_mode_applies_signed_releases_in_order_and_refuses_a_bad_signature(node: Node) -> None:
    key, stranger = generate_key(), generate_key()
    (node.root / "keys").mkdir()  # the trusted key is a node path, like every path of the config
    (node.root / "keys/release.pub").write_bytes(public_key_pem(key.public_key()))
    tree = ReleaseTree(node.box.base / "releases")
    tree.root.mkdir()

    def publish(version: str, signer: Any = key) -> None:
        flist = node.box.pack(f"zos:{version}.fl", service_release(node.root, version))
        tree.add(version, flist_url=f"{node.box.hub_url}/{REPO_NAME}/zos:{version}.fl", flist_file=flist,
                 key=signer)

    def applied(proc: subprocess.CompletedProcess[str]) -> list[str]:
        return [json.loads(line)["to_version"] for line in proc.stderr.splitlines()
                if '"transaction applied"' in line]

    publish("0.9.0")
    publish("1.0.0")
    port = free_port()
    with serving(zos_upgrade_cmd("release", "serve", "--root", str(tree.root), "--port", str(port)), port):
        node.write_config(
            source=f'publisher = "http://127.0.0.1:{port}"\ntrusted_keys = ["/keys/release.pub"]\n')
        proc = node.once()  # a fresh node installs the latest release, not all of them in turn
        assert proc.returncode == 0, proc.stderr
        assert applied(proc) == ["1.0.0"]
        publish("1.1.0")
        publish("1.2.0")
        proc = node.once()
        assert proc.returncode == 0, proc.stderr
        assert applied(proc) == ["1.1.0", "1.2.0"]  # then one at a time, in order
        assert node.box.wait_version("alpha", "1.2.0") == "1.2.0"
        assert node.status()["current_version"] == "1.2.0"
        before = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))

        publish("1.3.0", signer=stranger)
        proc = node.once()
        assert proc.returncode == 1, proc.stderr
        status = node.status()
        assert status["last_result"] == "error" and status["current_version"] == "1.2.0"
        assert "1.3.0" in status["last_error"]
        assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == before
        assert node.box.version_file("alpha") == "1.2.0"


# a stand-in program that passes the self step's start-up probe (upgrade/probe.py): `self-test` writes
# the marker with the probe's nonce; the real executable is proven in tests/dist
PROBED_PROGRAM = ("#!/bin/sh\n[ \"$1\" = self-test ] && printf '{\"nonce\":\"%s\",\"version\":\"sh\"}' "
                  "\"$ZOS_UPGRADE_PROBE\" > \"$ZOS_UPGRADE_PROBE_MARKER\"\necho new upgrader\n")


def _self_updating(node: Node) -> None:
    node.write_config(upgrade="").write_text(node.config.read_text().replace("self_update = false",
                                                                            "self_update = true"))


def test_self_update_exits_75_and_the_next_start_finishes_the_transaction(node: Node) -> None:
    _self_updating(node)
    node.release("1.0.0", extra={"bin/zos-upgrade": Exe(PROBED_PROGRAM)})
    # a fresh node has no /bin yet: self-update must create the program's directory itself
    assert not (node.root / "bin").exists()
    proc = node.once()
    assert proc.returncode == 75, proc.stderr
    assert "restart needed" in proc.stderr and "new program started" in proc.stderr
    assert (node.root / "bin/zos-upgrade").read_text() == PROBED_PROGRAM
    assert (node.state / "journal.json").exists()  # the transaction waits for the new program
    proc = node.once()  # what the supervisor does: start the (new) program again
    assert proc.returncode == 0, proc.stderr
    assert not (node.state / "journal.json").exists()
    assert node.status()["current_version"] == "1.0.0"
    assert node.box.wait_version("alpha", "1.0.0") == "1.0.0"


def test_a_new_program_that_cannot_start_is_put_back_and_the_release_rolled_back(node: Node) -> None:
    _self_updating(node)
    node.release("1.0.0", extra={"bin/zos-upgrade": Exe(PROBED_PROGRAM)})
    assert node.once().returncode == 75
    assert node.once().returncode == 0
    before = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    # 1.1.0 ships a program that exits at once, every time: it never writes its start-up marker
    node.release("1.1.0", extra={"bin/zos-upgrade": Exe("#!/bin/sh\necho broken >&2\nexit 3\n")})
    proc = node.once()
    assert proc.returncode == 1, proc.stderr  # rolled back; no exit 75 to a program that cannot run
    assert "exited with status 3 at start-up" in proc.stderr and "broken" in proc.stderr
    assert (node.root / "bin/zos-upgrade").read_text() == PROBED_PROGRAM
    assert not (node.state / "journal.json").exists()
    assert not (node.state / "program-probe.json").exists()
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == before
    status = node.status()
    assert status["current_version"] == "1.0.0" and "ProgramProbeFailed" in status["last_error"]
    assert node.once().returncode == 0  # held as failed: not tried again
    assert node.status()["last_result"] == "held"


def test_a_release_failing_probation_is_held_until_cleared_and_a_newer_one_applies(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.box.wait_version("beta", "1.0.0")
    before = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    node.release("1.1.0", crash=("beta",), extra={"opt/app/new.txt": "new"})
    assert node.once().returncode == 1  # tried once: rolled back

    proc = node.once()  # the next round, a new process: not tried again, nothing stopped or restarted
    assert proc.returncode == 0, proc.stderr
    assert "transaction starts" not in proc.stderr
    status = node.status()
    assert status["last_result"] == "held" and status["current_version"] == "1.0.0"
    assert "clear-failed 1.1.0" in status["last_error"]
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == before
    shown = subprocess.run(zos_upgrade_cmd("status", "--config", str(node.config)), capture_output=True,
                           text=True, timeout=30, check=True, cwd=REPO)
    assert "held releases:  1" in shown.stdout and "probation" in shown.stdout

    cleared = subprocess.run(zos_upgrade_cmd("clear-failed", "1.1.0", "--config", str(node.config)),
                             capture_output=True, text=True, timeout=30, check=False, cwd=REPO)
    assert cleared.returncode == 0 and "cleared 1.1.0" in cleared.stdout, cleared.stderr
    proc = node.once()  # cleared: tried again (and fails again)
    assert proc.returncode == 1 and "transaction starts" in proc.stderr
    assert node.status()["last_result"] == "rolled-back"

    node.release("1.2.0")  # a newer release is applied at once
    proc = node.once()
    assert proc.returncode == 0, proc.stderr
    assert node.status()["current_version"] == "1.2.0"
    assert node.box.wait_version("beta", "1.2.0") == "1.2.0"


def test_truncated_journal_refuses_the_start_and_recover_from_backup_restores_the_node(node: Node) -> None:
    node.release("1.0.0", extra={"opt/app/gone.txt": "old"})
    assert node.once().returncode == 0
    node.box.wait_version("beta", "1.0.0")
    committed = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    node.release("1.1.0", extra={"opt/app/new.txt": "new", "opt/new/deep.txt": "deep"})
    _killed_mid_apply(node)
    journal = node.state / "journal.json"
    journal.write_bytes(journal.read_bytes()[: journal.stat().st_size // 2])  # truncated
    half_applied = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    assert half_applied != committed

    proc = node.once()
    assert proc.returncode == 1
    assert "JournalBlocked" in proc.stderr and "zos-upgrade recover --from-backup" in proc.stderr
    assert node.status()["last_result"] == "rollback-incomplete"
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == half_applied  # refused: unchanged

    fixed = _recover_from_backup(node)
    assert fixed.returncode == 0, fixed.stderr
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == committed
    assert not journal.exists() and list(node.state.glob("journal.json.unreadable-*"))
    assert node.box.wait_version("beta", "1.0.0") == "1.0.0"

    again = _recover_from_backup(node)
    assert again.returncode == 1 and "no interrupted transaction to undo" in again.stderr  # no journal

    proc = node.once()  # the daemon starts again and applies 1.1.0 (never committed, not held)
    assert proc.returncode == 0, proc.stderr
    assert node.status()["current_version"] == "1.1.0"
    assert (node.root / "opt/new/deep.txt").read_text() == "deep"


def test_recover_from_backup_refuses_when_the_backup_lacks_a_committed_file(node: Node) -> None:
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", extra={"opt/app/new.txt": "new"})
    _killed_mid_apply(node)
    (node.state / "journal.json").write_text("{")
    shutil.rmtree(node.state / "backup", ignore_errors=True)
    # a committed file the transaction replaced, whose backup copy is lost with the backup
    files = json.loads((node.state / "manifests/boot.json").read_text())["files"]
    replaced = next(rel for rel, record in sorted(files.items()) if record[0] == "file")
    (node.root / replaced).write_text("changed by the interrupted transaction")
    before = tree_digest(node.root, exclude=("run", "tmp", "var", "sup"))
    proc = _recover_from_backup(node)
    assert proc.returncode == 1
    assert "RestoreRefused" in proc.stderr and "holds no copy with the committed content" in proc.stderr
    assert "nothing was changed" in proc.stderr and f"/{replaced}" in proc.stderr
    assert tree_digest(node.root, exclude=("run", "tmp", "var", "sup")) == before
    assert (node.state / "journal.json").read_text() == "{"  # the evidence stays where it was
    assert not list(node.state.glob("journal.json.unreadable-*"))
