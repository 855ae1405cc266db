"""The node id: configured, or generated once and kept across restarts; a damaged file is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zos_upgrade.node.identity import IDENTITY_FILE, IdentityError, load_identity, read_generated_id


def test_configured_id_wins_and_writes_nothing(tmp_path: Path) -> None:
    ident = load_identity(tmp_path / "state", "node-7", "workers")
    assert (ident.id, ident.group, ident.source) == ("node-7", "workers", "config")
    assert not (tmp_path / "state").exists()


def test_generated_once_then_kept(tmp_path: Path) -> None:
    first = load_identity(tmp_path, None, "default")
    assert first.source == "generated" and len(first.id) == 32
    again = load_identity(tmp_path, None, "default", new_id=lambda: "never-used")
    assert again.id == first.id
    assert read_generated_id(tmp_path) == first.id
    assert not [p for p in os.listdir(tmp_path) if p != IDENTITY_FILE]  # no temp file left


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "not a node id record"),
    (b'{"id": "a b", "created": 1}', "not a node id"),
    (b'{"id": 5, "created": 1}', "not a node id record"),
    (b'{"id": "x", "created": 1, "more": 2}', "not a node id record"),
    (b"x" * 5000, "larger than"),
])
def test_a_damaged_file_is_an_error_and_kept(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / IDENTITY_FILE).write_bytes(content)
    with pytest.raises(IdentityError, match=message) as info:
        load_identity(tmp_path, None, "default")
    assert "remove it" in str(info.value)
    assert (tmp_path / IDENTITY_FILE).read_bytes() == content
