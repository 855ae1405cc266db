"""Data the hooks change (``hooks.paths``) rolls back with the release: real hub subprocess, real supervisord.

The node holds data outside any release (``/srv/app``). Release 1.1.0's ``migrate`` converts it in
place, adds an index next to it and creates ``/srv/cache``, all declared in ``hooks.paths``. Whatever
makes the upgrade fail afterwards — a service failing probation, a SIGKILL — the old binaries must
find the old data again; when it succeeds, the migrated data stays and no saved copy is left.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from tests.e2e.upgrading import client, install
from tests.support.node import (
    Dir,
    Exe,
    Link,
    Sandbox,
    leftovers,
    run_child,
    service_release,
    tree_digest,
)
from tests.support.supervisord import RunningSupervisord
from zos_upgrade.supervisor import StateFamily
from zos_upgrade.upgrade import RolledBack, UpgradeFailed
from zos_upgrade.upgrade.journal import JOURNAL_NAME

DATA = b"format=1\nalice 1\nbob 2\n"
MIGRATE = Exe(
    "#!/bin/sh\nset -e\n"
    'd="$ZOS_ROOT/srv/app"\n'
    # convert in place (same inode): a backup by hard link would be converted too
    'sed -i "s/format=1/format=2/" "$d/data.txt"\n'
    'echo index > "$d/data.idx"\n'
    'mkdir -p "$ZOS_ROOT/srv/cache" && echo warm > "$ZOS_ROOT/srv/cache/state"\n'
)
DECLARED = "# what migrate changes\n/srv/app\n/srv/cache\n"


def node_on_1_0_0(box: Sandbox, sd: RunningSupervisord) -> dict[str, str]:
    box.pack("zos:1.0.0.fl", service_release(box.root, "1.0.0"))
    asyncio.run(install(box, sd, "tf-zos/zos:1.0.0.fl"))
    assert box.wait_version("beta", "1.0.0") == "1.0.0"
    data = box.root / "srv/app/data.txt"
    data.parent.mkdir(parents=True)
    data.write_bytes(DATA)
    data.chmod(0o600)
    return tree_digest(box.root)


def release_1_1_0(box: Sandbox, *, crash: tuple[str, ...] = (), declared: str = DECLARED,
                  extra: dict[str, str | bytes | Exe | Link | Dir] | None = None) -> None:
    box.pack("zos:1.1.0.fl", service_release(box.root, "1.1.0", crash=crash, extra={
        "migrate": MIGRATE, "hooks.paths": declared, **(extra or {}),
    }))


def wait_running(sd: RunningSupervisord, name: str, timeout: float = 10.0) -> bool:
    """Recovery returns once services are started; a child's programs count as started after 1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(client(sd).status(name)).family is StateFamily.RUNNING:
            return True
        time.sleep(0.1)
    return False


def assert_old_release_runs(box: Sandbox, sd: RunningSupervisord, before: dict[str, str]) -> None:
    assert tree_digest(box.root) == before
    assert (box.root / "srv/app/data.txt").read_bytes() == DATA
    assert not (box.root / "srv/cache").exists()
    for name in ("alpha", "beta"):
        assert box.wait_version(name, "1.0.0") == "1.0.0"
        assert wait_running(sd, name), name
    assert leftovers(box) == []


def test_probation_failure_after_migrate_restores_the_data_byte_for_byte(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    before = node_on_1_0_0(box, sd)
    release_1_1_0(box, crash=("beta",))
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert failed.value.step == "probation" and isinstance(failed.value, RolledBack)
    partial = failed.value.report  # what the transaction did before it failed (the demo shows it)
    assert partial is not None and partial.to_version == "1.1.0" and partial.release_bytes > 0
    assert {"fetch", "plan", "save-data", "migrate", "restart", "probation"} <= set(partial.phases)
    assert partial.files_added == 0  # nothing of it stayed on the node
    assert_old_release_runs(box, sd, before)


def test_crash_after_migrate_then_recovery_restores_the_data(box: Sandbox, sd: RunningSupervisord) -> None:
    before = node_on_1_0_0(box, sd)
    release_1_1_0(box)
    common = {"socket": sd.socket_path, "include": sd.include_dir}
    run = run_child(box, "upgrade", to="tf-zos/zos:1.1.0.fl", crash_at="after-migrate", **common)  # type: ignore[arg-type]
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert b"format=2" in (box.root / "srv/app/data.txt").read_bytes()  # the crash left migrated data
    again = run_child(box, "recover", **common)  # type: ignore[arg-type]
    assert again.returncode == 0, again.stderr[-3000:]
    assert "rolled back to 1.0.0" in again.stdout
    assert_old_release_runs(box, sd, before)


def test_crash_during_the_rollback_then_recovery_still_restores_the_data(
    box: Sandbox, sd: RunningSupervisord
) -> None:
    before = node_on_1_0_0(box, sd)
    release_1_1_0(box, crash=("beta",))
    common = {"socket": sd.socket_path, "include": sd.include_dir}
    run = run_child(box, "upgrade", to="tf-zos/zos:1.1.0.fl", crash_at="mid-rollback", **common)  # type: ignore[arg-type]
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    again = run_child(box, "recover", **common)  # type: ignore[arg-type]
    assert again.returncode == 0, again.stderr[-3000:]
    assert "rolled back to 1.0.0" in again.stdout
    assert_old_release_runs(box, sd, before)


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        ("/srv/app\n/srv/../../../etc/passwd\n", "contains '..'"),
        ("/opt/app\n", "a file of the release"),
        ("/srv/app\n" * 2, "declare each path once"),
    ],
    ids=["dotdot", "release-files", "duplicate"],
)
def test_hostile_declared_paths_are_refused_before_any_hook_runs(
    box: Sandbox, sd: RunningSupervisord, declared: str, words: str
) -> None:
    before = node_on_1_0_0(box, sd)
    marker = Exe('#!/bin/sh\ntouch "$ZOS_ROOT/srv/pre-copy-ran"\n')
    release_1_1_0(box, declared=declared, extra={"pre-copy": marker})
    with pytest.raises(UpgradeFailed) as failed:
        asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert failed.value.step == "plan" and words in failed.value.reason
    assert failed.value.report is not None and "fetch" in failed.value.report.phases
    assert "hooks.paths" in failed.value.reason
    assert not (box.root / "srv/pre-copy-ran").exists()
    assert not (box.state / JOURNAL_NAME).exists()
    result = json.loads((box.state / "last-transaction.json").read_text())
    assert result["result"] == "refused" and result["step"] == "plan"
    assert_old_release_runs(box, sd, before)


def test_success_keeps_the_migrated_data_and_no_saved_copy(box: Sandbox, sd: RunningSupervisord) -> None:
    node_on_1_0_0(box, sd)
    release_1_1_0(box)
    report = asyncio.run(install(box, sd, "tf-zos/zos:1.1.0.fl"))
    assert "save-data" in report.phases  # type: ignore[attr-defined]
    assert (box.root / "srv/app/data.txt").read_bytes() == DATA.replace(b"format=1", b"format=2")
    assert (box.root / "srv/app/data.idx").read_text() == "index\n"
    assert (box.root / "srv/cache/state").read_text() == "warm\n"
    assert not (box.root / "hooks.paths").exists()  # a control file, like the hooks
    assert box.wait_version("beta", "1.1.0") == "1.1.0"
    assert not (box.state / "backup" / "data").exists()
    assert leftovers(box) == []
