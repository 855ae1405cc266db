"""The real-tool fixtures themselves: they start what they say, and a missing tool skips outside CI
but fails under CI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import tests.support.upstream as upstream
from tests.support.upstream import HubProcess, ZdbServer


def test_missing_tools_skip_outside_ci_and_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(upstream, "MANIFEST", tmp_path / "no-tools.json")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make tools"):
        upstream.tool("zdb")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        upstream.tool("zdb")


def test_a_manifest_naming_a_missing_binary_is_missing_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = tmp_path / "tools.json"
    manifest.write_text('{"zdb": "%s"}' % (tmp_path / "gone" / "zdb"))
    monkeypatch.setattr(upstream, "MANIFEST", manifest)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="zdb is not built"):
        upstream.tool("zdb")


def test_real_zdb_is_0db_with_its_own_namespaces(real_zdb: ZdbServer) -> None:
    assert "0-db" in real_zdb.command("INFO")["server_name"]  # not a Redis
    real_zdb.namespace("guarded", "pw", public=False)
    assert b"guarded" in real_zdb.command("NSLIST")
    assert real_zdb.proc.poll() is None
    real_zdb.stop()
    assert real_zdb.proc.poll() is not None  # stopped by its PID


def test_real_0hub_serves_its_storage_over_its_zdb(real_0hub: HubProcess) -> None:
    (real_0hub.public / "someone").mkdir()
    repos = httpx.get(f"{real_0hub.base}/api/repositories", timeout=30).json()
    assert [r["name"] for r in repos] == ["someone"]
    me = httpx.get(f"{real_0hub.base}/api/flist/me", timeout=30).json()
    assert me["payload"]["username"] == "Administrator"  # authentication off, as configured
