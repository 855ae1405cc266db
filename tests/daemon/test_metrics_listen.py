"""Where metrics are served (issue 18 item 7): loopback unless the config says otherwise explicitly, a
non-loopback address with `allow_remote`, a unix socket with `socket`; scraped and parsed with
prometheus_client's text parser."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import free_port
from zos_upgrade.config import ConfigError, parse_config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.metrics import RESULTS, PrometheusMetrics, start_metrics

BASE = ('[source]\nhub = "http://127.0.0.1:1"\nflist = "tf-zos/zos:latest.fl"\n[trust]\ninsecure = true\n'
        '[metrics]\nenabled = true\n')


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_config_keys_are_explicit_and_validated() -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        parse_config(BASE + 'host = "0.0.0.0"\n')
    assert parse_config(BASE + 'host = "0.0.0.0"\nallow_remote = true\n').metrics.allow_remote
    with pytest.raises(ConfigError, match=re.escape("metrics.host = 'example.com' is not an IP address")):
        parse_config(BASE + 'host = "example.com"\nallow_remote = true\n')
    assert parse_config(BASE + 'socket = "/run/zos-upgrade/metrics.sock"\n').metrics.socket
    with pytest.raises(ConfigError, match=re.escape("'run/m.sock' must be an absolute path")):
        parse_config(BASE + 'socket = "run/m.sock"\n')
    with pytest.raises(ConfigError, match=re.escape("must not contain '..'")):
        parse_config(BASE + 'socket = "/run/../../m.sock"\n')
    with pytest.raises(ConfigError, match="set one of them"):
        parse_config(BASE + 'socket = "/run/m.sock"\nallow_remote = true\n')
    with pytest.raises(ConfigError, match="allow_remote"):
        parse_config(BASE + 'allow_remote = "yes"\n')


def test_served_on_all_addresses_when_allowed() -> None:
    port = free_port()
    metrics = start_metrics(True, "0.0.0.0", port, allow_remote=True)
    try:
        metrics.check("held", at=1234.5, installed="1.0.0", channel="1.1.0", update_available=True)
        values = _values(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        assert values[("zos_upgrade_last_result", (("result", "held"),))] == 1
        assert values[("zos_upgrade_update_available", ())] == 1
        assert values[("zos_upgrade_last_check_timestamp_seconds", ())] == 1234.5
    finally:
        metrics.close()


def test_served_on_a_unix_socket_and_gone_after_close() -> None:
    # a short path: a unix socket's path is at most 107 bytes
    with tempfile.TemporaryDirectory(prefix="zu-m-", dir="/tmp") as base:
        sock = Path(base) / "run" / "metrics.sock"
        sock.parent.mkdir()
        sock.touch()  # not a socket: never removed, the bind fails with a message naming it
        with pytest.raises(ZosUpgradeError, match="cannot serve metrics on unix socket"):
            start_metrics(True, "127.0.0.1", 1, socket_path=sock)
        sock.unlink()
        metrics = start_metrics(True, "127.0.0.1", 1, socket_path=sock)
        assert isinstance(metrics, PrometheusMetrics)
        try:
            metrics.held(2)
            metrics.running(True)
            metrics.installed("1.0.0", None)
            metrics.upgrade("rolled-back", duration=2.0, bytes_downloaded=157_000_000)
            client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=5)
            values = _values(client.get("http://localhost/metrics").text)
            assert values[("zos_upgrade_failed_releases_held", ())] == 2
            assert values[("zos_upgrade_transaction_in_progress", ())] == 1
            assert values[("zos_upgrade_installed_info", (("channel", ""), ("version", "1.0.0")))] == 1
            assert values[("zos_upgrade_downloaded_bytes_total", ())] == 157_000_000
            assert values[("zos_upgrade_upgrades_total", (("result", "rolled-back"),))] == 1
            # every status word is exported, 0 until it happens
            assert {dict(k[1])["result"] for k in values if k[0] == "zos_upgrade_last_result"} == set(RESULTS)
        finally:
            metrics.close()
        assert not sock.exists()


def test_every_status_word_is_a_metrics_label() -> None:
    # the metrics sit below node/ in the layers, so they keep their own list: it must be the same words
    from typing import get_args

    from zos_upgrade.daemon.outcome import Result
    from zos_upgrade.metrics import RESULTS
    from zos_upgrade.node.state import CheckResult

    assert set(RESULTS) == set(get_args(CheckResult)) == set(get_args(Result))
