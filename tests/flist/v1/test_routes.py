"""Where a v1 flist says its blocks live: backend metadata for one zdb route, router.yaml otherwise."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.flist.v1.test_format import sample_entries
from zos_upgrade.flist import FlistError, Route, open_flist, write_flist


def test_single_zdb_route_is_written_as_backend_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.flist"
    routes = [Route(0, 255, "zdb://:s3cret@hub.example:9900/myns")]
    write_flist(path, sample_entries(), routes=routes)
    with open_flist(path) as reader:
        backend = json.loads(reader.tags()["backend"])
        assert backend == {"host": "hub.example", "port": 9900, "namespace": "myns", "password": "s3cret"}
        assert reader.routes() == routes


def test_several_routes_are_written_as_router_yaml(tmp_path: Path) -> None:
    path = tmp_path / "a.flist"
    routes = [Route(0, 0x7F, "zdb://a:9900"), Route(0x80, 0xFF, "http://b/blocks")]
    write_flist(path, sample_entries(), routes=routes)
    with tarfile.open(path) as archive:
        assert "./router.yaml" in archive.getnames()
    with open_flist(path) as reader:
        assert reader.routes() == routes
        assert "backend" not in reader.tags()


def test_replica_routes_survive_router_yaml_in_order(tmp_path: Path) -> None:
    # the same range twice (a replica) used to collapse to its last URL in router.yaml's one pool
    path = tmp_path / "a.flist"
    routes = [Route(0, 0x7F, "zdb://a:9900"), Route(0, 0x7F, "zdb://b:9900"),
              Route(0x80, 0xFF, "zdb://c:9900"), Route(0x80, 0xFF, "zdb://b:9900")]
    write_flist(path, sample_entries(), routes=routes)
    with open_flist(path) as reader:
        assert reader.routes() == routes


def test_backend_metadata_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "a.flist"
    write_flist(path, sample_entries(), tags={"backend": '{"port": 9900}'})
    with open_flist(path) as reader, pytest.raises(FlistError, match="'host'"):
        reader.routes()
    write_flist(path, sample_entries(), tags={"backend": '{"host": "h", "port": 99999}'})
    with open_flist(path) as reader, pytest.raises(FlistError, match="not a TCP port"):
        reader.routes()
