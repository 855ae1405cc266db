"""The headers of an flist download, as the real 0-hub (Flask's send_from_directory) sends them."""

from __future__ import annotations

import os
from pathlib import Path

from zos_upgrade.hubserver.http import download_headers


def test_download_headers_name_mtime_and_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.utime(path, (1700000100.7, 1700000100.7))
    headers = download_headers("v1.flist", path.stat())
    assert headers == {
        "Content-Disposition": "inline; filename=v1.flist",
        "Last-Modified": "Tue, 14 Nov 2023 22:15:00 GMT",  # what the real hub sent for this mtime
        "Cache-Control": "no-cache",
    }


def test_download_names_that_are_not_tokens_are_quoted_or_encoded(tmp_path: Path) -> None:
    st = tmp_path.stat()

    def disposition(name: str) -> str:
        return download_headers(name, st)["Content-Disposition"]

    assert disposition("app:latest.flist") == 'inline; filename="app:latest.flist"'  # as the real hub
    assert disposition('a"b\\c.flist') == 'inline; filename="a\\"b\\\\c.flist"'
    # a header is latin-1: beyond ASCII the name is percent-encoded UTF-8 (RFC 6266 filename*)
    value = disposition("café.flist")
    assert value == "inline; filename*=UTF-8''caf%C3%A9.flist"
    value.encode("latin-1")
