"""`zos-upgrade status` and the metrics end to end (issue 18 items 6, 7): a sandbox node, the real hub,
a real supervisord, the daemon as a child process; status read by the CLI while a transaction runs
and after the daemon restarted; metrics scraped over HTTP and parsed by prometheus_client's parser."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.daemon_node import Node, clean_env, wait_for
from tests.support.node import Exe
from tests.support.procs import REPO, free_port, stop_process, zos_upgrade_cmd

# the migrate hook holds the transaction (phase "applied") until the test lets it go; bounded
WAIT_HOOK = Exe(
    "#!/bin/sh\n"
    'i=0; while [ ! -e "$ZOS_ROOT/run/go" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n'
)


def _status(node: Node) -> dict[str, Any]:
    proc = subprocess.run(zos_upgrade_cmd("status", "--config", str(node.config), "--json"),
                          capture_output=True, text=True, timeout=30, check=False, cwd=REPO, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _text(node: Node) -> str:
    proc = subprocess.run(zos_upgrade_cmd("status", "--config", str(node.config)),
                          capture_output=True, text=True, timeout=30, check=False, cwd=REPO, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_status_while_a_transaction_runs_and_after_a_daemon_restart(node: Node) -> None:
    port = free_port()
    node.write_config(upgrade=f"[metrics]\nenabled = true\nport = {port}\n")
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", extra={"migrate": WAIT_HOOK})
    daemon = node.start()
    try:
        wait_for(lambda: (node.state / "journal.json").exists() and
                 json.loads((node.state / "journal.json").read_text())["phase"] == "applied",
                 timeout=30, what="the transaction held in its migrate hook")
        during = _status(node)
        assert during["alive"]["state"] == "running" and during["alive"]["pid"] == daemon.pid
        assert during["alive"]["lock_held"] and during["alive"]["is_daemon"]
        tx = during["transaction"]
        assert (tx["phase"], tx["from_version"], tx["to_version"]) == ("applied", "1.0.0", "1.1.0")
        assert tx["last_step_done"] == "post-copy" and 0 < tx["steps_done"] < tx["steps_total"]
        assert during["daemon"]["running"]["to"] == "1.1.0"
        text = _text(node)
        assert f"daemon:         running (pid {daemon.pid}, holds the node lock)" in text
        assert "now:            boot 1.0.0 -> 1.1.0, phase applied (" in text
        scraped = _scrape(port)
        assert scraped[("zos_upgrade_transaction_in_progress", ())] == 1
        assert scraped[("zos_upgrade_installed_info", (("channel", "1.0.0"), ("version", "1.0.0")))] == 1

        (node.root / "run").mkdir(exist_ok=True)
        (node.root / "run/go").write_text("")
        wait_for(lambda: node.status()["last_result"] == "upgraded"
                 and node.status()["next_check"] is not None,
                 timeout=30, what="the upgrade to 1.1.0 committed")
        after = _status(node)
        assert after["transaction"] is None and after["previous_version"] == "1.0.0"
        assert after["history"][0]["result"] == "committed" and after["history"][0]["to_version"] == "1.1.0"
        assert after["drift"] == {"state": "in-sync", "installed": "1.1.0", "channel": "1.1.0"}
        assert after["daemon"]["next_check"] > after["daemon"]["last_check"]
        scraped = _scrape(port)
        assert scraped[("zos_upgrade_transaction_in_progress", ())] == 0
        # rounds go on every 0.5 s: the last one is the upgrade or one after it that found nothing
        last = [dict(labels)["result"] for (name, labels), v in scraped.items()
                if name == "zos_upgrade_last_result" and v == 1]
        assert last in (["upgraded"], ["up-to-date"]), last
        assert scraped[("zos_upgrade_checks_total", (("result", "upgraded"),))] == 1
        assert scraped[("zos_upgrade_update_available", ())] == 0
        assert scraped[("zos_upgrade_upgrades_total", (("result", "upgraded"),))] == 1
        assert scraped[("zos_upgrade_last_check_timestamp_seconds", ())] >= after["daemon"]["last_check"]
        assert scraped[("zos_upgrade_installed_info", (("channel", "1.1.0"), ("version", "1.1.0")))] == 1
    finally:
        stop_process(daemon)
    stopped = _status(node)
    assert stopped["alive"]["state"] == "stopped" and not stopped["alive"]["lock_held"]
    assert f"last pid {daemon.pid} has exited" in stopped["alive"]["detail"]

    restarted = node.start()  # a new daemon: the last upgrade and the channel survive
    try:
        first = stopped["daemon"]["last_check"]
        wait_for(lambda: node.status()["last_check"] > first and node.status()["pid"] == restarted.pid,
                 timeout=30, what="a round of the restarted daemon")
        again = _status(node)
        assert again["alive"]["pid"] == restarted.pid and again["daemon"]["last_result"] == "up-to-date"
        upgrade = again["daemon"]["last_upgrade"]
        assert (upgrade["from"], upgrade["to"], upgrade["result"]) == ("1.0.0", "1.1.0", "upgraded")
        assert again["previous_version"] == "1.0.0" and again["drift"]["state"] == "in-sync"
    finally:
        stop_process(restarted)


def test_a_failed_transaction_counts_its_bytes_and_status_wraps_its_reason(node: Node) -> None:
    port = free_port()
    node.write_config(upgrade=f"[metrics]\nenabled = true\nport = {port}\n")
    node.release("1.0.0")
    assert node.once().returncode == 0
    node.release("1.1.0", crash=("beta",), extra={"opt/app/blob.bin": os.urandom(300_000)})
    daemon = node.start()
    try:
        wait_for(lambda: node.status()["last_result"] == "rolled-back", timeout=30, what="the rollback")
        status = _status(node)
        upgrade = status["daemon"]["last_upgrade"]
        assert upgrade["result"] == "rolled-back" and upgrade["bytes_downloaded"] >= 300_000
        assert status["history"][0]["result"] == "rolled-back" and status["history"][0]["step"] == "probation"
        # 1.0.0 was a first install: no release before it to roll back to
        assert status["drift"]["state"] == "behind" and status["previous_version"] is None
        scraped = _scrape(port)
        assert scraped[("zos_upgrade_downloaded_bytes_total", ())] == upgrade["bytes_downloaded"]
        assert scraped[("zos_upgrade_upgrades_total", (("result", "rolled-back"),))] == 1
        assert scraped[("zos_upgrade_update_available", ())] == 1
        assert scraped[("zos_upgrade_failed_releases_held", ())] == 1
        text = _text(node)
        # a long reason is wrapped under its value column, never under the labels
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("last error:"))
        following = lines[start + 1]
        assert following.startswith(" " * 16), text
        assert not following.startswith(" " * 17), text
        paths = ("node root", "state dir")
        assert all(len(line) <= 100 for line in lines if not line.startswith(paths)), text
    finally:
        stop_process(daemon)
